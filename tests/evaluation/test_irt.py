"""Tests for tasks/evaluation/irt.py: 2PL parameter recovery, girth parity, flags, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import spearmanr

from tasks.evaluation.irt import fit_2pl, item_separation


def simulate_2pl(theta: np.ndarray, a: np.ndarray, b: np.ndarray, seed: int) -> np.ndarray:
    """(M, I) 0/1 responses drawn from the 2PL model."""
    rng = np.random.default_rng(seed)
    p = expit(a * (theta[:, None] - b))
    return (rng.uniform(size=p.shape) < p).astype(np.int8)


def test_recovers_known_difficulties() -> None:
    rng = np.random.default_rng(0)
    theta = rng.normal(size=300)
    a = rng.uniform(0.8, 2.0, size=40)
    b = rng.normal(size=40)
    fit = fit_2pl(simulate_2pl(theta, a, b, seed=1))
    assert fit.converged
    assert np.corrcoef(fit.difficulty, b)[0, 1] > 0.9
    assert np.corrcoef(fit.ability, theta)[0, 1] > 0.9
    assert np.corrcoef(fit.discrimination, a)[0, 1] > 0.5
    # approximate SEs are honest to within a factor: most abilities lie within 2 SE
    assert np.mean(np.abs(fit.ability - theta) < 2.5 * fit.ability_se) > 0.85


def test_tiny_matrix_few_models_many_items() -> None:
    """Our use case: a handful of models x many test items; abilities come out in order."""
    rng = np.random.default_rng(2)
    theta = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0])
    b = rng.normal(0.0, 1.5, size=400)
    a = rng.uniform(0.7, 2.0, size=400)
    y = simulate_2pl(theta, a, b, seed=3)
    fit = fit_2pl(y)
    assert np.all(np.isfinite(fit.difficulty)) and np.all(np.isfinite(fit.ability_se))
    assert spearmanr(fit.ability, theta).statistic == pytest.approx(1.0)
    assert np.corrcoef(fit.difficulty, b)[0, 1] > 0.8
    # abilities are well determined with 400 items
    assert np.all(fit.ability_se < 0.3)


def test_matches_girth_mml() -> None:
    girth = pytest.importorskip("girth")
    rng = np.random.default_rng(4)
    theta = rng.normal(size=500)
    a = rng.uniform(0.8, 2.0, size=20)
    b = rng.normal(size=20)
    y = simulate_2pl(theta, a, b, seed=5)
    ours = fit_2pl(y)
    theirs = girth.twopl_mml(y.T.astype(np.int64))  # girth expects items x persons
    assert np.corrcoef(ours.difficulty, theirs["Difficulty"])[0, 1] > 0.95
    assert np.corrcoef(ours.discrimination, theirs["Discrimination"])[0, 1] > 0.8


def test_flags_non_discriminating_items() -> None:
    rng = np.random.default_rng(6)
    theta = rng.normal(size=200)
    good = simulate_2pl(theta, np.full(20, 1.8), rng.normal(size=20), seed=7)
    coin = (rng.uniform(size=(200, 8)) < 0.5).astype(np.int8)  # a = 0: unrelated to ability
    easy = np.ones((200, 2), dtype=np.int8)  # everyone correct
    reverse = 1 - simulate_2pl(theta, np.full(3, 1.8), np.zeros(3), seed=8)  # strong models fail
    y = np.concatenate([good, coin, easy, reverse], axis=1)
    fit = fit_2pl(y)
    flags = fit.flags
    assert np.mean(flags[:20] == "") >= 0.9
    assert np.mean(flags[20:28] != "") >= 0.75
    assert list(flags[28:30]) == ["constant", "constant"]
    assert np.all(flags[30:] == "negative_correlation")
    assert fit.non_discriminating.sum() == np.sum(flags != "")


def test_item_separation() -> None:
    # 3 models (weak, middle, strong) x response patterns repeated so each is well estimated
    patterns = np.array([[0, 0, 1], [0, 1, 1], [1, 1, 1], [0, 0, 0]]).T  # (3 models, 4 items)
    rng = np.random.default_rng(9)
    noise = simulate_2pl(np.array([-1.0, 0.0, 1.0]), np.full(60, 1.5), rng.normal(size=60), 10)
    fit = fit_2pl(np.concatenate([np.repeat(patterns, 5, axis=1), noise], axis=1))
    assert list(np.argsort(fit.ability)) == [0, 1, 2]
    sep = item_separation(fit)
    assert sep.shape == (80,)
    assert np.all((sep >= 0) & (sep <= 1))
    only_strong, not_weak, everyone, nobody = sep[0], sep[5], sep[10], sep[15]
    assert min(only_strong, not_weak) > max(everyone, nobody)
    # between the weak and middle model, the item only the weak one misses separates best
    pair = item_separation(fit, [0, 1])
    assert pair[5] > pair[0]
    # the definition: P(theta_max) - P(theta_min) under the fitted 2PL
    p = fit.prob_correct()
    np.testing.assert_allclose(sep, p[2] - p[0])
    with pytest.raises(ValueError, match="at least 2 models"):
        item_separation(fit, [0])
    with pytest.raises(ValueError, match="out of range"):
        item_separation(fit, [0, 7])


@pytest.mark.parametrize(
    ("responses", "match"),
    [
        (np.array([1, 0, 1]), "2-D"),
        (np.array([[1, 0, 1]]), "at least 2 models"),
        (np.array([[1, 0], [0.5, 1]]), "0/1"),
        (np.array([[1, 0], [np.nan, 1]]), "non-finite value at model 1, item 0"),
        (np.zeros((3, 0)), "no items"),
    ],
)
def test_bad_input(responses: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_2pl(responses)


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="sigma_b"):
        fit_2pl(np.array([[1, 0], [0, 1]]), sigma_b=0.0)
