"""Rashomon samplers: determinism per seed, epsilon sets blind to test labels, bad input."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from models import ModelSpec
from tasks.data_prep import DataParams, prepare, table_to_tensors
from tasks.multiplicity import sampler as sp
from tasks.multiplicity.metrics import MultiplicityError
from tasks.papers import dropout_rashomon as dr
from tasks.train import OptimParams, fit, init_model


@pytest.fixture(scope="module")
def splits():
    return prepare(DataParams(dataset="breast_cancer", max_samples=120))


@pytest.fixture(scope="module")
def base(splits):
    model = init_model(ModelSpec(hidden=(8,)), splits["train"], 2, 0)
    fit(model, OptimParams(max_epochs=3, lr=0.01), splits["train"], splits["val"], 0)
    return model


def _xy(splits):
    x_ref, y_ref, _ = table_to_tensors(splits["val"])
    x_test, _, _ = table_to_tensors(splits["test"])
    return x_ref, y_ref, x_test


@pytest.mark.parametrize("kind", ["dropout_bernoulli", "dropout_gaussian"])
def test_dropout_is_deterministic_per_seed_and_rate_zero_is_the_base(base, splits, kind):
    x_ref, y_ref, x_test = _xy(splits)
    a = sp.dropout_candidates(base, kind, [0.0, 0.2], 5, x_ref, y_ref, x_test, seed=3)
    b = sp.dropout_candidates(base, kind, [0.0, 0.2], 5, x_ref, y_ref, x_test, seed=3)
    c = sp.dropout_candidates(base, kind, [0.0, 0.2], 5, x_ref, y_ref, x_test, seed=4)
    assert np.array_equal(a.test_probs, b.test_probs) and np.array_equal(a.ref_loss, b.ref_loss)
    assert not np.array_equal(a.test_probs[5:], c.test_probs[5:])
    with torch.no_grad():
        p0 = base(x_test).softmax(-1).numpy()
    assert np.allclose(a.test_probs[:5], p0[None], atol=1e-6)  # p = 0: every copy is the base
    assert a.test_probs.shape == (10, len(x_test), 2) and len(a) == 10
    # the hooks are gone afterwards
    assert not any(m._forward_hooks for m in base.modules())


def test_awp_is_deterministic_and_restores_the_base(base, splits):
    x_ref, y_ref, x_test = _xy(splits)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    a = sp.awp_candidates(base, x_ref, y_ref, x_test, points=2, steps=3, lr=0.1, max_loss=10.0, seed=1)
    b = sp.awp_candidates(base, x_ref, y_ref, x_test, points=2, steps=3, lr=0.1, max_loss=10.0, seed=1)
    assert np.array_equal(a.test_probs, b.test_probs) and len(a) == 2 * 2 * 3
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())


def test_bad_sampler_settings_are_refused(base, splits):
    x_ref, y_ref, x_test = _xy(splits)
    with pytest.raises(MultiplicityError, match="dropout rate"):
        sp.dropout_candidates(base, "dropout_bernoulli", [1.0], 2, x_ref, y_ref, x_test, seed=0)
    with pytest.raises(MultiplicityError, match="unknown dropout kind"):
        sp.dropout_candidates(base, "dropconnect", [0.1], 2, x_ref, y_ref, x_test, seed=0)


TINY = dr.ExploreParams(
    model=ModelSpec(hidden=(8,)), optim=OptimParams(max_epochs=2, lr=0.01), base_seeds=(0, 1), retrain_models=2,
    rates=2, per_rate=3, awp_points=1, awp_steps=2, eps_grid=(0.0, 0.02), eps_main=0.02, capacity_members=4,
    ensemble_k=2,
)
TIMING = {"seconds_total", "sec_per_candidate", "sec_per_valid"}


def test_epsilon_sets_never_read_test_labels(splits):
    """Permuting the test labels changes no epsilon set and no multiplicity number."""
    test = splits["test"]
    y = test.column("label").to_numpy()
    shuffled = test.set_column(1, "label", pa.array(np.roll(y, 1)))
    params = {"explore": TINY, "data.breast_cancer": DataParams(dataset="breast_cancer")}
    a = dr.explore(params, train=splits["train"], val=splits["val"], test=test)["multiplicity"]
    b = dr.explore(params, train=splits["train"], val=splits["val"], test=shuffled)["multiplicity"]
    cols = [c for c in a.column_names if c not in TIMING]
    assert a.select(cols).to_pandas().equals(b.select(cols).to_pandas())  # NaN == NaN here
    assert set(a.column("method").to_pylist()) == set(sp.SAMPLERS)


def test_explore_params_refuse_bad_epsilon():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="epsilon must be a finite number >= 0"):
        dr.ExploreParams(eps_grid=(-0.01, 0.02), eps_main=0.02)
    with pytest.raises(ValidationError, match="eps_main"):
        dr.ExploreParams(eps_grid=(0.0, 0.01), eps_main=0.02)
