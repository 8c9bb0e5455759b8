"""DP-SGD with Opacus + the one-run canary audit: the accountant is respected and DP bites."""

from __future__ import annotations

import pytest

from models import ModelSpec
from tasks.train import torch_threads
from tasks.data_prep import DataParams, prepare
from tasks.audit.dpsgd import DPSGDParams, canary_audit, make_canaries


@pytest.fixture(scope="module")
def digits():
    return prepare(DataParams(dataset="digits", val_fraction=0.3, test_fraction=0.1))


def _audit(digits, eps):
    p = DPSGDParams(target_eps=eps, epochs=40, lr=0.5, model=ModelSpec(hidden=(256,)))
    with torch_threads(1):
        return canary_audit(p, digits["train"], digits["val"], m=400, n_classes=10)


def test_dp_sgd_respects_accountant_and_collapses_the_audit(digits) -> None:
    free = _audit(digits, None)
    private = _audit(digits, 2.0)
    assert private["eps_spent"] == pytest.approx(2.0, abs=0.05)
    assert private["eps_recomputed"] == pytest.approx(private["eps_spent"], rel=1e-6)
    assert private["eps_lb"] <= private["eps_spent"]  # a lower bound never exceeds the truth
    assert free["canary_auc"] > 0.8 and free["eps_lb"] > 1.0  # memorised mislabelled canaries
    assert free["eps_lb"] > private["eps_lb"] + 0.5


def test_canaries_are_mislabelled(digits) -> None:
    pool = digits["val"]
    can, inc = make_canaries(pool, 50, 10, seed=0)
    orig = dict(zip(pool.column("id").to_pylist(), pool.column("label").to_pylist()))
    assert all(orig[i] != lab for i, lab in zip(can.column("id").to_pylist(), can.column("label").to_pylist()))
    assert inc.shape == (50,) and 0 < inc.sum() < 50
    with pytest.raises(ValueError, match="canary pool has only"):
        make_canaries(pool, pool.num_rows + 1, 10, seed=0)
