"""Tests for tasks/evaluation/calibration.py: hand-computed values, sklearn/torchmetrics parity, errors."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.metrics as skm
import torch
from matplotlib.figure import Figure
from torchmetrics.functional.classification import multiclass_calibration_error

from tasks.evaluation import calibration as scoring


def _random_probs(rng: np.random.Generator, n: int, c: int, temp: float = 1.0) -> np.ndarray:
    logits = rng.normal(size=(n, c)) * temp
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---- hand-computed values -------------------------------------------------------------------
def test_brier_hand_computed() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    labels = np.array([0, 2])
    # row 0: 0.3^2 + 0.2^2 + 0.1^2 = 0.14 ; row 1: 0.1^2 + 0.8^2 + 0.9^2 = 1.46
    assert scoring.brier(probs, labels) == pytest.approx((0.14 + 1.46) / 2)


def test_brier_binary_vector_is_mean_squared_error() -> None:
    p = np.array([0.9, 0.2, 0.6])
    y = np.array([1, 0, 0])
    assert scoring.brier(p, y) == pytest.approx((0.01 + 0.04 + 0.36) / 3)
    assert scoring.brier(p, y) == pytest.approx(skm.brier_score_loss(y, p))


def test_log_loss_matches_sklearn_and_hand_value() -> None:
    probs = np.array([[0.5, 0.5], [0.9, 0.1]])
    labels = np.array([1, 0])
    assert scoring.log_loss(probs, labels) == pytest.approx(-(np.log(0.5) + np.log(0.9)) / 2)
    rng = np.random.default_rng(0)
    p = _random_probs(rng, 200, 4)
    y = rng.integers(0, 4, 200)
    assert scoring.log_loss(p, y) == pytest.approx(skm.log_loss(y, p, labels=range(4)))


def test_log_loss_confident_mistake_is_finite() -> None:
    assert scoring.log_loss(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-np.log(1e-15))


def test_ece_hand_computed_two_bins() -> None:
    # conf 0.6, 0.7 -> bin (0.5, 1]; conf 0.9, 0.95 -> same bin with n_bins=2
    probs = np.array([[0.6, 0.4], [0.3, 0.7], [0.9, 0.1], [0.05, 0.95]])
    labels = np.array([0, 0, 0, 1])  # hits: 1, 0, 1, 1
    # one filled bin: acc 3/4, conf (0.6+0.7+0.9+0.95)/4 = 0.7875 -> |0.75-0.7875| = 0.0375
    assert scoring.ece(probs, labels, n_bins=2) == pytest.approx(0.0375)
    # 10 bins: (0.5,0.6]: acc 1 conf 0.6 ; (0.6,0.7]: acc 0 conf 0.7 ; (0.8,0.9]: 1 vs 0.9 ;
    # (0.9,1]: 1 vs 0.95 -> (0.4 + 0.7 + 0.1 + 0.05) / 4
    assert scoring.ece(probs, labels, n_bins=10) == pytest.approx((0.4 + 0.7 + 0.1 + 0.05) / 4)


def test_ece_confidence_one_goes_into_last_bin() -> None:
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 0])  # one hit with conf 1, one miss with conf 1
    assert scoring.ece(probs, labels, n_bins=15) == pytest.approx(0.5)


def test_equal_mass_ece_hand_computed() -> None:
    probs = np.array([0.55, 0.6, 0.8, 0.95])  # P(y=1); top-label conf = same values
    labels = np.array([0, 1, 1, 1])  # hits 0, 1, 1, 1
    # 2 equal-mass bins: {0.55, 0.6}: acc .5 conf .575 ; {0.8, 0.95}: acc 1 conf .875
    expected = 0.5 * 0.075 + 0.5 * 0.125
    assert scoring.ece(probs, labels, n_bins=2, binning="mass") == pytest.approx(expected)
    # more bins than points: every point is its own bin = mean |hit - conf|
    per_point = np.mean(np.abs(np.array([0, 1, 1, 1]) - probs))
    assert scoring.ece(probs, labels, n_bins=15, binning="mass") == pytest.approx(per_point)


def test_classwise_ece_hand_computed() -> None:
    probs = np.array([[0.8, 0.2], [0.4, 0.6]])
    labels = np.array([0, 0])
    # class 0: p = .8 (label 0 -> freq 1), .4 (freq 1); 2 bins: (.5,1]: |1-.8|, (0,.5]: |1-.4|
    #   -> (0.2 + 0.6) / 2 = 0.4 ; class 1: p = .2 (freq 0), .6 (freq 0) -> (0.2 + 0.6)/2 = 0.4
    assert scoring.classwise_ece(probs, labels, n_bins=2) == pytest.approx(0.4)


def test_balance_score_hand_computed_and_sign() -> None:
    p = np.array([0.8, 0.8, 0.3, 0.3])
    y = np.array([1, 0, 0, 1])
    # f: 1-.8=.2, -.8, .3, .3-1=-.7 -> mean -0.25
    assert scoring.balance_score(p, y) == pytest.approx(-0.25)
    # accuracy - mean confidence form, via the (n, 2) input
    assert scoring.balance_score(np.stack([1 - p, p], 1), y) == pytest.approx(-0.25)


def test_balance_score_tracks_true_calibration_gap() -> None:
    # The paper's property: E f = p - p_hat. A model that reports p_hat = p + 0.1 on the
    # confident side must score about -0.1; a calibrated one about 0.
    rng = np.random.default_rng(1)
    p_true = rng.uniform(0.55, 0.85, 200_000)
    y = (rng.uniform(size=p_true.shape) < p_true).astype(int)
    assert scoring.balance_score(p_true, y) == pytest.approx(0.0, abs=5e-3)
    assert scoring.balance_score(p_true + 0.1, y) == pytest.approx(-0.1, abs=5e-3)
    assert scoring.balance_score(p_true - 0.05, y) == pytest.approx(0.05, abs=5e-3)


# ---- parity with torchmetrics ---------------------------------------------------------------
@pytest.mark.parametrize("n_bins", [5, 15])
@pytest.mark.parametrize("temp", [0.5, 3.0])
def test_ece_matches_torchmetrics(n_bins: int, temp: float) -> None:
    rng = np.random.default_rng(n_bins)
    probs = _random_probs(rng, 500, 5, temp)
    labels = rng.integers(0, 5, 500)
    # Avoid torchmetrics issue #3510 (confidence == 1.0 lands in a phantom bin) and exact bin
    # edges (torchmetrics bins are left-closed, ours right-closed as in Guo et al.).
    conf = probs.max(axis=1)
    assert conf.max() < 1.0
    assert not np.any(np.isclose(conf * n_bins, np.round(conf * n_bins), rtol=0, atol=1e-9))
    ours = scoring.ece(probs, labels, n_bins=n_bins)
    theirs = multiclass_calibration_error(
        torch.tensor(probs), torch.tensor(labels), num_classes=5, n_bins=n_bins, norm="l1"
    ).item()
    assert ours == pytest.approx(theirs, abs=1e-6)


def test_binary_vector_equals_two_column_input() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(size=300)
    y = rng.integers(0, 2, 300)
    two = np.stack([1 - p, p], axis=1)
    for fn in (scoring.log_loss, scoring.ece, scoring.classwise_ece):
        assert fn(p, y) == pytest.approx(fn(two, y))
    assert scoring.brier(p, y) == pytest.approx(scoring.brier(two, y) / 2)


def test_calibrated_model_has_small_ece_miscalibrated_large() -> None:
    rng = np.random.default_rng(4)
    p = rng.uniform(size=20_000)
    y = (rng.uniform(size=p.shape) < p).astype(int)
    assert scoring.ece(p, y) < 0.02
    assert scoring.ece(p, y, binning="mass") < 0.02
    sharp = np.clip(0.5 + 1.8 * (p - 0.5), 0, 1)  # over-confident
    assert scoring.ece(sharp, y) > 0.1


def test_reliability_diagram_returns_figure() -> None:
    rng = np.random.default_rng(5)
    fig = scoring.reliability_diagram(_random_probs(rng, 100, 3), rng.integers(0, 3, 100), 10)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert "ECE" in ax.get_title()
    assert len(ax.patches) >= 1


# ---- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("probs", "labels", "match"),
    [
        (np.array([[0.5, 0.5]]), np.array([0, 1]), "labels has 2 entries"),
        (np.array([[0.5, 0.6]]), np.array([0]), "sum to 1"),
        (np.array([[np.nan, 1.0]]), np.array([0]), "non-finite"),
        (np.array([[1.5, -0.5]]), np.array([0]), r"\[0, 1\]"),
        (np.array([[0.5, 0.5]]), np.array([2]), r"labels must lie in \[0, 2\)"),
        (np.array([[0.5, 0.5]]), np.array([0.5]), "integers"),
        (np.zeros((0, 2)), np.array([], dtype=int), "empty"),
        (np.ones((2, 1)), np.array([0, 0]), "at least 2 classes"),
        (np.ones((1, 1, 2)) / 2, np.array([0]), "shape"),
    ],
)
def test_bad_input_raises(probs: np.ndarray, labels: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        scoring.brier(probs, labels)


def test_bad_options_raise() -> None:
    p, y = np.array([0.2, 0.7]), np.array([0, 1])
    with pytest.raises(ValueError, match="binning must be one of"):
        scoring.ece(p, y, binning="quantile")
    with pytest.raises(ValueError, match="n_bins"):
        scoring.ece(p, y, n_bins=0)
    with pytest.raises(ValueError, match="eps"):
        scoring.log_loss(p, y, eps=0.0)
