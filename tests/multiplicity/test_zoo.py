"""The model zoo: every family, probabilities per item on val (reference) and test, read back."""

import numpy as np
import pytest
from pydantic import ValidationError

from tasks.data_prep import DataParams, prepare
from tasks.multiplicity import zoo
from tasks.multiplicity.metrics import MultiplicityError
from tasks.train import OptimParams

TINY = zoo.ZooParams(
    capacities={"logreg": (1.0,), "tree": (2,), "forest": (5,), "boosting": (5,), "knn": (3,), "mlp": (8,)},
    seeds=(0, 1), fractions=(0.5, 1.0), mlp_optim=OptimParams(max_epochs=2, lr=0.01),
)


@pytest.fixture(scope="module")
def built():
    s = prepare(DataParams(dataset="digits", max_samples=200))
    return s, zoo.build_zoo(TINY, train=s["train"], val=s["val"], test=s["test"])


def test_zoo_has_every_model_on_every_reference_and_test_item(built):
    s, out = built
    models = out["models"]
    assert models.num_rows == 6 * 2 * 2 and set(models.column("family").to_pylist()) == set(zoo.FAMILIES)
    zoo.check_probs_table(out["probs"], "probs")
    for split in ("val", "test"):
        names, ids, labels, scores = zoo.score_tensor(out["probs"], split)
        assert len(names) == 24 and np.array_equal(ids, s[split].column("id").to_numpy())
        assert np.array_equal(labels, s[split].column("label").to_numpy())
        assert scores.shape == (24, s[split].num_rows, 10)
    # the reported accuracy is that of the stored probabilities
    _, _, labels, scores = zoo.score_tensor(out["probs"], "test")
    assert np.allclose(models.column("test_acc").to_numpy(), (scores.argmax(2) == labels).mean(1))


def test_zoo_is_deterministic(built):
    s, out = built
    again = zoo.build_zoo(TINY, train=s["train"], val=s["val"], test=s["test"])
    assert again["probs"].equals(out["probs"])


def test_ragged_zoo_and_unknown_split_are_refused(built):
    _, out = built
    t = out["probs"]
    with pytest.raises(MultiplicityError, match="unknown zoo split"):
        zoo.score_tensor(t, "train")
    drop_one = t.slice(1)  # the first model loses one item
    with pytest.raises(MultiplicityError, match="ragged zoo"):
        zoo.score_tensor(drop_one, "val", models=["mlp-8-f1-s0", t.column("model")[0].as_py()])
    with pytest.raises(MultiplicityError, match="not in the zoo"):
        zoo.score_tensor(t, "val", models=["nope"])


def test_zoo_params_name_bad_values():
    with pytest.raises(ValidationError, match="unknown model family 'svm'"):
        zoo.ZooParams(capacities={"svm": (1.0,)})
    with pytest.raises(ValidationError, match="fractions"):
        zoo.ZooParams(fractions=(0.0,))
