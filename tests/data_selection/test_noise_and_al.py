"""The label-noise injector's record, the AL loop's determinism and AULC, bad input to select()."""

import numpy as np
import pytest

from tasks.data_prep import DataParams, prepare
from tasks.data_selection.active import ALParams, active_learning, aulc
from tasks.data_selection.noise import NOISE_RECORD_SCHEMA, NoiseParams, inject_noise
from tasks.data_selection.selection import Pool, select
from tasks.platform.errors import ReprolabError
from tasks.train import OptimParams


def test_noise_injector_record_is_exact():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 400)
    ids = rng.permutation(10_000)[:400]
    before = labels.copy()
    p = NoiseParams(pos_to_neg=0.3, pos_to_pos=0.1, neg_to_pos=0.2, seed=7)
    new, record = inject_noise(ids, labels, 5, p)
    np.testing.assert_array_equal(labels, before)  # input untouched
    assert record.schema == NOISE_RECORD_SCHEMA
    changed = np.flatnonzero(new != labels)
    assert sorted(record.column("id").to_pylist()) == sorted(ids[changed].tolist())
    assert record.column("id").to_pylist() == sorted(record.column("id").to_pylist())
    by_id = dict(zip(ids.tolist(), range(400)))
    for i, old, nw in zip(*(record.column(c).to_pylist() for c in ("id", "old", "new"))):
        assert labels[by_id[i]] == old and new[by_id[i]] == nw and old != nw
    n_pos, n_neg = int((labels != 0).sum()), int((labels == 0).sum())
    old, nw = record.column("old").to_numpy(), record.column("new").to_numpy()
    assert int(((old != 0) & (nw == 0)).sum()) == round(0.3 * n_pos)
    assert int(((old != 0) & (nw != 0)).sum()) == round(0.1 * n_pos)
    assert int(((old == 0) & (nw != 0)).sum()) == round(0.2 * n_neg)
    again, record2 = inject_noise(ids, labels, 5, p)
    assert record2.equals(record) and np.array_equal(again, new)
    with pytest.raises(ValueError, match="pos_to_neg \\+ pos_to_pos"):
        NoiseParams(pos_to_neg=0.8, pos_to_pos=0.3)


@pytest.fixture(scope="module")
def tiny_digits():
    return prepare(DataParams(dataset="digits", max_samples=300))


def test_al_loop_is_deterministic_per_seed(tiny_digits):
    s = tiny_digits
    p = ALParams(init_size=10, batch_size=10, rounds=2, optim=OptimParams(max_epochs=2, batch_size=16), mc_samples=3)
    runs = {sel: active_learning(p, sel, 4, train=s["train"], val=s["val"], test=s["test"]) for sel in ("bald", "kcenter")}
    for sel, (curve, picks) in runs.items():
        again, picks_again = active_learning(p, sel, 4, train=s["train"], val=s["val"], test=s["test"])
        assert curve.equals(again) and picks.equals(picks_again)
        assert picks.column("round").to_pylist() == [0] * 10 + [1] * 10
        assert picks.column("reason")[0].as_py().startswith(f"{sel}(") and len(picks.column("id").unique()) == 20
        assert curve.column("n_labelled").to_pylist() == [10, 20, 30]
        radius = curve.column("covering_radius").to_pylist()
        assert all(b <= a for a, b in zip(radius, radius[1:]))  # labelled sets only grow
    other, _ = active_learning(p, "kcenter", 5, train=s["train"], val=s["val"], test=s["test"])
    assert not other.equals(runs["kcenter"][0])
    with pytest.raises(ReprolabError, match="exceeds"):
        active_learning(ALParams(init_size=200, batch_size=100, rounds=2), "random", 0, train=s["train"], val=s["val"], test=s["test"])


def test_aulc_is_the_normalised_trapezoid():
    assert aulc(np.array([10, 20, 40]), np.array([0.5, 0.7, 0.9])) == pytest.approx((0.6 * 10 + 0.8 * 20) / 30)
    assert aulc(np.array([0, 1]), np.array([1.0, 1.0])) == 1.0
    with pytest.raises(ReprolabError, match="increasing"):
        aulc(np.array([10, 10]), np.array([0.1, 0.2]))


@pytest.mark.parametrize("call, match", [
    (lambda p: select(p, 9, selector="random"), "budget 9 is larger"),
    (lambda p: select(p, 2, selector="coreset_magic"), "unknown selector 'coreset_magic'"),
    (lambda p: select(Pool(np.array([1, 1, 2]), {}), 1, selector="random"), "duplicate ids: \\[1\\]"),
    (lambda p: select(p, 2, selector="entropy"), "non-finite value"),
    (lambda p: select(p, 2, selector="noise_extrinsic", target=None), "needs pool view 'labels'"),
    (lambda p: select(p, 2, selector="kcenter", radius=3), "unknown option"),
])
def test_bad_input_names_the_problem(call, match):
    probs = np.full((8, 3), 1 / 3)
    probs[5, 1] = np.nan  # a model that gave NaN
    pool = Pool(np.arange(8), {"probs": probs, "features": np.zeros((8, 2))})
    with pytest.raises(ReprolabError, match=match):
        call(pool)
