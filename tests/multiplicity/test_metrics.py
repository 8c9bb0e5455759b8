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
