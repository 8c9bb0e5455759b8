"""Multiplicity metrics on hand-built model sets (values computed by hand)."""

import numpy as np
import pytest

from tasks.multiplicity import metrics as mm


def onehot(decisions, c=3, conf=0.8):
    """(m, n) decisions -> (m, n, c) scores with ``conf`` on the decided class."""
    d = np.asarray(decisions)
    p = np.full((*d.shape, c), (1 - conf) / (c - 1))
    np.put_along_axis(p, d[..., None], conf, axis=-1)
    return p


def test_identical_models_have_zero_multiplicity():
    base = np.array([0, 1, 2, 1, 0])
    s = onehot(np.stack([base] * 4))
    out = mm.multiplicity(s, base)
    assert out["ambiguity"] == 0 and out["discrepancy"] == 0 and out["disagreement"] == 0
    assert out["vpr"] == 0 and out["score_variance"] == 0
    assert out["rashomon_capacity"] == pytest.approx(1.0, abs=1e-6)


def test_one_flipped_point_gives_exactly_one_over_n():
    n = 7
    base = np.zeros(n, dtype=int)
    flipped = base.copy()
    flipped[3] = 2
    s = onehot(np.stack([base, base, flipped]))
    assert mm.ambiguity(s, base) == 1 / n
    assert mm.discrepancy(s, base) == 1 / n
    # disagreement on the flipped point: mu = (2/3, 0, 1/3) -> 2 (1 - 4/9 - 1/9) = 8/9
    d = mm.disagreement(s)
    assert d[3] == pytest.approx(8 / 9) and np.all(np.delete(d, 3) == 0)
    # base-class score on point 3: 0.8, 0.8, 0.1 -> range 0.7, variance of (0.8, 0.8, 0.1)
    assert mm.viable_prediction_range(s, base)[3] == pytest.approx(0.7)
    assert mm.score_variance(s, base)[3] == pytest.approx(np.var([0.8, 0.8, 0.1]))


def test_discrepancy_is_max_over_models_ambiguity_union():
    base = np.array([0, 0, 0, 0])
    s = onehot(np.array([[1, 0, 0, 0], [0, 1, 1, 0]]), c=2)
    assert mm.ambiguity(s, base) == 3 / 4
    assert mm.discrepancy(s, base) == 2 / 4


def test_binary_disagreement_matches_reference_formula():
    dec = np.array([[0, 1], [1, 1], [1, 0], [1, 1]])
    mu = dec.mean(axis=0)
    assert np.allclose(mm.disagreement(onehot(dec, c=2)), 4 * mu * (1 - mu))


def test_rashomon_capacity_of_distinct_one_hot_models_is_class_count():
    # k models putting all mass on k different classes: capacity log2 k bits -> 2**C = k
    s = np.eye(3)[:, None, :]  # (3 models, 1 sample, 3 classes)
    assert mm.rashomon_capacity(s)[0] == pytest.approx(3.0, rel=1e-6)
    # binary symmetric channel with crossover 0.1: C = 1 - H(0.1)
    bsc = np.array([[[0.9, 0.1]], [[0.1, 0.9]]])
    h = -(0.1 * np.log2(0.1) + 0.9 * np.log2(0.9))
    assert np.log2(mm.rashomon_capacity(bsc)[0]) == pytest.approx(1 - h, abs=1e-6)


def test_epsilon_set_and_empty_set():
    mask = mm.epsilon_set([0.30, 0.31, 0.40], base_loss=0.30, eps=0.02)
    assert mask.tolist() == [True, True, False]
    s = onehot(np.zeros((3, 4), dtype=int))
    assert mm.members(s, mask).shape[0] == 2
    with pytest.raises(mm.EmptyRashomonSetError, match="empty"):
        mm.members(s, mm.epsilon_set([0.5, 0.6, 0.7], base_loss=0.3, eps=0.0))


@pytest.mark.parametrize("eps", [-0.01, float("nan"), float("inf")])
def test_negative_or_non_finite_epsilon_is_refused(eps):
    with pytest.raises(mm.MultiplicityError, match="epsilon"):
        mm.epsilon_set([0.3], 0.3, eps)


def test_bad_score_matrices_are_refused():
    base = np.array([0, 1])
    with pytest.raises(mm.MultiplicityError, match="ragged"):
        mm.ambiguity([np.full((2, 2), 0.5), np.full((3, 2), 0.5)], base)
    with pytest.raises(mm.MultiplicityError, match="ragged"):
        mm.ambiguity([[[0.5, 0.5], [1.0]]], base)
    with pytest.raises(mm.MultiplicityError, match="sum to 1: model 0, sample 1"):
        mm.ambiguity([[[0.5, 0.5], [0.7, 0.7]]], base)
    with pytest.raises(mm.MultiplicityError, match="negative"):
        mm.ambiguity([[[1.5, -0.5], [0.5, 0.5]]], base)
    with pytest.raises(mm.MultiplicityError, match="models, samples, classes"):
        mm.ambiguity(np.full((2, 2), 0.5), base)
    with pytest.raises(mm.MultiplicityError, match="base decisions"):
        mm.ambiguity(onehot(np.zeros((2, 2), dtype=int), c=2), np.array([0, 5]))


# seed-to-seed multiplicity (decisions only) -----------------------------------------------
def test_seed_multiplicity_of_identical_seeds_is_zero():
    d = np.tile(np.array([0, 2, 1, 1]), (3, 1))
    out = mm.seed_multiplicity(d)
    assert out == {"ambiguity": 0.0, "discrepancy": 0.0, "churn": 0.0, "disagreement": 0.0, "n_models": 3.0}


def test_seed_multiplicity_hand_case():
    # seeds 0, 1 agree everywhere; seed 2 flips item 1 of 5; seed 3 flips items 1 and 4
    d = np.array([[0, 1, 2, 0, 1],
                  [0, 1, 2, 0, 1],
                  [0, 2, 2, 0, 1],
                  [0, 0, 2, 0, 2]])
    pc = mm.pairwise_churn(d)
    # pairs: (0,1) 0, (0,2) 1/5, (0,3) 2/5, (1,2) 1/5, (1,3) 2/5, (2,3) 2/5 -> sum 8/5 over 6 pairs
    assert pc[2, 3] == pytest.approx(2 / 5) and pc[0, 1] == 0 and np.allclose(pc, pc.T)
    out = mm.seed_multiplicity(d)
    assert out["ambiguity"] == pytest.approx(2 / 5)  # items 1 and 4 are not unanimous
    assert out["discrepancy"] == pytest.approx(2 / 5)
    assert out["churn"] == pytest.approx((8 / 5) / 6)
    # item 1: mu = (1/4, 2/4, 1/4) -> 2 (1 - 6/16) = 5/4; item 4: mu = (3/4, 1/4) -> 2 (1 - 10/16) = 3/4
    assert out["disagreement"] == pytest.approx((5 / 4 + 3 / 4) / 5)
    # ambiguity w.r.t. any member equals the scores-based ambiguity with that member as base
    s = onehot(d)
    for k in range(4):
        assert mm.ambiguity(s, d[k]) == pytest.approx(out["ambiguity"])
    assert max(mm.discrepancy(s, d[k]) for k in range(4)) == pytest.approx(out["discrepancy"])
    assert mm.disagreement(s).mean() == pytest.approx(out["disagreement"])


def test_seed_multiplicity_bad_input():
    with pytest.raises(mm.MultiplicityError, match="models >= 2"):
        mm.seed_multiplicity(np.array([[0, 1, 1]]))
    with pytest.raises(mm.MultiplicityError, match="ragged"):
        mm.seed_multiplicity([[0, 1, 1], [0, 1]])
    with pytest.raises(mm.MultiplicityError, match="class indices"):
        mm.seed_multiplicity(np.array([[0.5, 1.0], [0.0, 1.0]]))


def test_decisions_by_seed_pivots_and_refuses_missing_items():
    import pyarrow as pa

    t = pa.table({"model": ["a"] * 4 + ["b"] * 2, "seed": [1, 0, 1, 0, 0, 1], "id": [7, 7, 3, 3, 3, 3],
                  "pred": [2, 1, 0, 0, 5, 5]})
    assert mm.decisions_by_seed(t, "a").tolist() == [[0, 1], [0, 2]]  # rows seeds 0, 1; columns ids 3, 7
    with pytest.raises(mm.MultiplicityError, match="no rows for model 'c'"):
        mm.decisions_by_seed(t, "c")
    with pytest.raises(mm.MultiplicityError, match="seed 0 lacks items"):
        mm.decisions_by_seed(t.slice(0, 3), "a")


# Rashomon ratio ---------------------------------------------------------------------------
def test_rashomon_ratio_hand_values():
    losses = [0.25, 0.5, 0.75, 1.0]
    assert mm.rashomon_ratio(losses, eps=0.25) == 0.5  # {0.25, 0.5} of 4
    assert mm.rashomon_ratio(losses, eps=0.0) == 0.25
    assert mm.rashomon_ratio(losses, eps=1.0) == 1.0
    # a better optimum than every draw: the set can be empty, and the ratio is then 0 (no division)
    assert mm.rashomon_ratio(losses, eps=0.1, best_loss=0.0) == 0.0
    assert mm.rashomon_ratio(losses, eps=0.5, best_loss=0.0) == 0.5


def test_rashomon_ratio_bad_input():
    with pytest.raises(mm.MultiplicityError, match="epsilon"):
        mm.rashomon_ratio([0.1, 0.2], eps=-0.1)
    with pytest.raises(mm.MultiplicityError, match="non-empty"):
        mm.rashomon_ratio([], eps=0.1)
    with pytest.raises(mm.MultiplicityError, match="finite"):
        mm.rashomon_ratio([0.1, float("nan")], eps=0.1)
    with pytest.raises(mm.MultiplicityError, match="best_loss 0.3"):
        mm.rashomon_ratio([0.1, 0.2], eps=0.1, best_loss=0.3)


def test_pattern_rashomon_ratio_hand_value():
    d = np.array([[0, 1], [0, 1], [1, 1], [1, 0]])  # 3 distinct patterns
    assert mm.pattern_rashomon_ratio(d, [True, True, True, False]) == pytest.approx(2 / 3)
    assert mm.pattern_rashomon_ratio(d, [False] * 4) == 0.0
    with pytest.raises(mm.MultiplicityError, match="mask"):
        mm.pattern_rashomon_ratio(d, [True, False])
