"""Selectors on hand-checkable pools: uncertainty scores, BALD, greedy/robust k-center, noise flaggers."""

import numpy as np
import pytest

from tasks.data_selection import kcenter as kc
from tasks.data_selection.selection import Pool, select
from tasks.data_selection.uncertainty import bald_scores, entropy, margin_scores
from tasks.platform.errors import ReprolabError


def test_bald_equals_hand_computed_value():
    # two MC samples of one example over 2 classes: p1 = (0.9, 0.1), p2 = (0.5, 0.5)
    mc = np.array([[[0.9, 0.1]], [[0.5, 0.5]]])
    h = lambda *p: -sum(q * np.log(q) for q in p)
    expected = h(0.7, 0.3) - (h(0.9, 0.1) + h(0.5, 0.5)) / 2  # H(mean) - mean H = 0.6109 - 0.5091
    assert bald_scores(mc)[0] == pytest.approx(expected, abs=1e-6)
    assert abs(expected - 0.1017) < 1e-3
    # identical samples: no disagreement, no information
    assert bald_scores(np.stack([mc[0], mc[0]]))[0] == pytest.approx(0.0, abs=1e-12)


def test_uncertainty_scores_and_pick_order():
    probs = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.3, 0.1]])
    assert entropy(probs) == pytest.approx([0.0, np.log(2), np.log(3), -(0.6 * np.log(0.6) + 0.3 * np.log(0.3) + 0.1 * np.log(0.1))])
    assert margin_scores(probs) == pytest.approx([0.0, 1.0, 1.0, 0.7])
    pool = Pool(np.array([10, 11, 12, 13]), {"probs": probs})
    assert select(pool, 2, selector="entropy").ids.tolist() == [12, 13]  # ln 3 > 0.898 > ln 2
    assert select(pool, 3, selector="margin").ids.tolist() == [11, 12, 13]  # tie 11/12: lower position first
    assert select(pool, 2, selector="least_confidence", labelled=[12]).ids.tolist() == [11, 13]


def _blobs(n=300, d=5, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


@pytest.mark.parametrize("centres", [[], [3, 17]])
def test_kcenter_incremental_equals_recompute_reference(centres):
    x = _blobs()
    fast, r_fast = kc.kcenter_greedy(x, np.array(centres, dtype=int), 40, first=5 if not centres else None)
    ref, r_ref = kc.kcenter_greedy_recompute(x, np.array(centres, dtype=int), 40, first=5 if not centres else None)
    assert fast.tolist() == ref.tolist()
    np.testing.assert_array_equal(r_fast, r_ref)
    # the k-center rule, checked from scratch: each pick is the farthest point from the centres so far
    s = list(centres) or [5]
    for u in fast[0 if centres else 1:]:
        d = np.min(np.linalg.norm(x[:, None, :] - x[None, s, :], axis=2), axis=1)
        d[s] = -1
        assert u == int(np.argmax(d))
        s.append(int(u))


def test_kcenter_covering_radius_never_increases():
    x = _blobs(400, 3, 1)
    picks, radius = kc.kcenter_greedy(x, np.array([0]), 60)
    radii = [kc.covering_radius(x, np.concatenate([[0], picks[:i]])) for i in range(len(picks) + 1)]
    assert all(b <= a for a, b in zip(radii, radii[1:]))
    assert radii[-1] < radii[0]
    # the score of each pick is the radius just before it
    np.testing.assert_allclose(radius, radii[:-1])
    # through select(): scores non-increasing, never a labelled id, a duplicate-point pool works
    pool = Pool(np.arange(400) + 1000, {"features": x})
    sel = select(pool, 30, selector="kcenter", labelled=[1000, 1001], seed=0)
    assert np.all(np.diff(sel.scores) <= 0) and not {1000, 1001} & set(sel.ids.tolist())
    dup = Pool(np.arange(4), {"features": np.zeros((4, 2))})
    assert sorted(select(dup, 3, selector="kcenter", labelled=[0]).ids.tolist()) == [1, 2, 3]


def test_robust_kcenter_ignores_an_outlier_and_never_loses_to_greedy():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(200, 2)), [[60.0, 60.0]]])  # one far outlier (position 200)
    greedy, _ = kc.kcenter_greedy(x, np.array([0]), 5)
    assert 200 in greedy.tolist()  # the 2-approximation spends a centre on the outlier
    picks, gains, delta = kc.robust_kcenter(x, np.array([0]), np.arange(1, 201), 5, outliers=1)
    assert 200 not in picks.tolist()
    covered = np.min(np.linalg.norm(x[:, None] - x[None, np.concatenate([[0], picks])], axis=2), axis=1)
    assert int((covered > delta + 1e-9).sum()) <= 1  # at most Xi points outside the radius
    assert delta <= kc.covering_radius(x, np.concatenate([[0], greedy]))
    assert np.all(gains[:-1] >= gains[1:]) or gains.size  # gains are counts of newly covered points
    sel = select(Pool(np.arange(201), {"features": x}), 5, selector="robust_kcenter", labelled=[0],
                 outlier_fraction=0.005)
    assert 200 not in sel.ids.tolist() and "outlier_fraction=0.005" in sel.reason
    with pytest.raises(ReprolabError, match="outlier_fraction"):
        select(Pool(np.arange(201), {"features": x}), 5, selector="robust_kcenter", outlier_fraction=1.5)


def test_extrinsic_flags_majority_disagreement_with_clean_neighbours():
    # clean subset: class 1 around (0, 0), class 0 around (10, 10)
    clean = Pool(np.array([100, 101, 102, 103]), {"features": np.array([[0, 0], [0, 1], [10, 10], [10, 11.0]]),
                                                  "labels": np.array([1, 1, 0, 0])})
    x = np.array([[0.2, 0.5], [10, 10.5], [0.1, 0.1], [9.9, 10.0]])
    labels = np.array([0, 0, 1, 1])  # id 0: a "positive" labelled negative; id 3: a negative labelled positive
    pool = Pool(np.arange(4), {"features": x, "labels": labels})
    assert select(pool, 4, selector="noise_extrinsic", target=clean, k=2).ids.tolist() == [0]
    both = select(pool, 4, selector="noise_extrinsic", target=clean, k=2, positives=True)
    assert sorted(both.ids.tolist()) == [0, 3] and np.all(both.scores == 1.0)


def test_intrinsic_flags_negatives_near_false_negatives():
    x = np.array([[0, 0], [0.1, 0], [5, 5], [5.1, 5], [0, 0.2]])
    labels = np.array([1, 0, 0, 0, 1])  # id 1 is labelled negative among positives
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.9, 0.1], [0.9, 0.1], [0.2, 0.8]])  # id 0: a false negative
    pool = Pool(np.arange(5), {"features": x, "labels": labels, "probs": probs})
    sel = select(pool, 3, selector="noise_intrinsic", k=1)
    assert sel.ids.tolist() == [1]  # only the nearest negative of the one anchor gets a vote
    assert select(pool, 3, selector="label_disagreement").ids.tolist() == [0, 1]  # 1 - 0.2 > 1 - 0.3
