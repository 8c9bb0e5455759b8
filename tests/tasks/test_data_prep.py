import numpy as np
import pytest
from pydantic import ValidationError

from tasks.data_prep import DATASETS, FEATURES, DataParams, num_features, prepare, split_schema_check, table_to_tensors


@pytest.mark.parametrize("dataset", DATASETS)
def test_splits_are_disjoint_stratified_and_deterministic(dataset):
    p = DataParams(dataset=dataset, num_samples=600, max_samples=400)
    a, b = prepare(p), prepare(p)
    for name in ("train", "val", "test"):
        assert a[name].equals(b[name])
        split_schema_check(a[name], name)
        assert num_features(a[name]) == FEATURES[dataset]
    ids = [set(a[n].column("id").to_pylist()) for n in ("train", "val", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(len(i) for i in ids) == 400
    _, y_tr, _ = table_to_tensors(a["train"])
    _, y_te, _ = table_to_tensors(a["test"])
    # stratified: every class present in both splits with similar frequency
    assert set(y_tr.tolist()) == set(y_te.tolist())
    f_tr = np.bincount(y_tr.numpy()) / len(y_tr)
    f_te = np.bincount(y_te.numpy()) / len(y_te)
    assert np.abs(f_tr - f_te).max() < 0.05


def test_mnist1d_noise_scale_changes_data():
    lo = prepare(DataParams(dataset="mnist1d", num_samples=200, noise_scale=0.0))["train"]
    hi = prepare(DataParams(dataset="mnist1d", num_samples=200, noise_scale=3.0))["train"]
    assert not lo.equals(hi)


def test_bad_fractions_are_rejected():
    with pytest.raises(ValidationError, match="leaves under 10%"):
        DataParams(val_fraction=0.5, test_fraction=0.45)
    with pytest.raises(ValidationError, match="dataset"):
        DataParams(dataset="cifar")
