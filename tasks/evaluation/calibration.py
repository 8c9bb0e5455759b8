"""Proper scoring rules and calibration error: the one implementation every paper uses.

Sources:
    * Brier, "Verification of forecasts expressed in terms of probability" (1950):
      ``BS = (1/N) sum_i sum_k (p_ik - 1[y_i = k])^2``.
    * Guo et al., "On Calibration of Modern Neural Networks" (ICML 2017), eq. (3):
      ``ECE = sum_b (n_b / N) |acc_b - conf_b|`` over equal-width bins of the top-label
      confidence.
    * Nixon et al., "Measuring Calibration in Deep Learning" (CVPRW 2019): the same sum
      over equal-mass bins (each bin holds the same number of predictions).
    * Kull et al., "Beyond temperature scaling" (NeurIPS 2019), classwise ECE:
      ``cwECE = (1/K) sum_k sum_b (n_kb / N) |freq_k(b) - mean p_k(b)|``.
    * Choi, Kim, Lee, "Rethinking Evaluation Metric for Probability Estimation Models Using
      Esports Data" (arXiv 2309.06248): the Balance score, a binning-free gain/loss score
      whose expectation is ``p - p_hat`` (signed calibration gap); see `balance_score`.

Inputs everywhere:
    probs: (n, C) float array of class probabilities (rows sum to 1), or (n,) float array of
        P(y = 1) for a binary problem, which is read as the (n, 2) array ``[1 - p, p]``.
    labels: (n,) int array with values in ``[0, C)``.

NOTE: binning convention. Bin b of ``n_bins`` equal-width bins is the right-closed interval
``(b / n_bins, (b + 1) / n_bins]`` as in Guo et al. (2017); a confidence of exactly 0 goes into
the first bin and one of exactly 1.0 into the last. torchmetrics 1.9 uses left-closed bins
``[b / n_bins, (b + 1) / n_bins)`` and so puts 1.0 into a phantom (n_bins + 1)-th bin
(torchmetrics issue #3510); the two agree whenever no confidence sits exactly on a bin edge.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "balance_score",
    "brier",
    "classwise_ece",
    "ece",
    "log_loss",
    "reliability_diagram",
]

BINNINGS = ("width", "mass")
_SUM_TOL = 1e-4  # float32 softmax rows sum to 1 within ~1e-6; be lenient, not silent


# PLATFORM: input checking shared by every metric -------------------------------------------
def _check(probs: object, labels: object) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate and normalise inputs.

    Returns:
        (probs (n, C) float64, labels (n,) int64, was_binary_vector).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 1:
        binary = True
        p = np.stack([1.0 - p, p], axis=1)
    elif p.ndim == 2:
        binary = False
        if p.shape[1] < 2:
            raise ValueError(f"probs must have at least 2 classes, got shape {p.shape}")
    else:
        raise ValueError(f"probs must be (n,) or (n, C), got shape {p.shape}")
    if p.shape[0] == 0:
        raise ValueError("probs is empty: need at least one prediction")
    if not np.all(np.isfinite(p)):
        bad = np.argwhere(~np.isfinite(p))[0]
        raise ValueError(f"probs has a non-finite value at row {bad[0]}")
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(f"probs must lie in [0, 1], got range [{p.min()}, {p.max()}]")
    sums = p.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=_SUM_TOL):
        row = int(np.argmax(np.abs(sums - 1.0)))
        raise ValueError(f"probs rows must sum to 1: row {row} sums to {sums[row]}")

    y_raw = np.asarray(labels)
    if y_raw.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y_raw.shape}")
    if y_raw.shape[0] != p.shape[0]:
        raise ValueError(f"labels has {y_raw.shape[0]} entries but probs has {p.shape[0]} rows")
    if y_raw.dtype.kind == "b":
        y_raw = y_raw.astype(np.int64)
    if y_raw.dtype.kind not in "iu":
        if y_raw.dtype.kind == "f" and np.all(np.isfinite(y_raw)) and np.all(y_raw == np.round(y_raw)):
            y_raw = y_raw.astype(np.int64)
        else:
            raise ValueError(f"labels must be integers, got dtype {y_raw.dtype}")
    y = y_raw.astype(np.int64)
    n_classes = p.shape[1]
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}), got range [{y.min()}, {y.max()}]")
    return p, y, binary


def _check_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)


def _width_bin_ids(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin index per confidence; bins are (b/B, (b+1)/B], 0 and 1 included."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # searchsorted(side="left") - 1 gives the bin whose right edge is >= conf.
    ids = np.searchsorted(edges, conf, side="left") - 1
    return np.clip(ids, 0, n_bins - 1)


def _mass_bin_ids(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-mass bin index: sort by confidence and split into n_bins near-equal chunks.

    NOTE: ties that straddle a chunk boundary are split by a stable sort (input order), so
    the result is deterministic; with fewer predictions than bins every bin holds one.
    """
    n_bins = min(n_bins, conf.shape[0])
    order = np.argsort(conf, kind="stable")
    ids = np.empty(conf.shape[0], dtype=np.int64)
    for b, chunk in enumerate(np.array_split(order, n_bins)):
        ids[chunk] = b
    return ids


def _binned_gap(conf: np.ndarray, hit: np.ndarray, ids: np.ndarray) -> float:
    """sum_b (n_b / N) |mean(hit in b) - mean(conf in b)| for precomputed bin ids."""
    n = conf.shape[0]
    n_bins = int(ids.max()) + 1
    count = np.bincount(ids, minlength=n_bins).astype(np.float64)
    sum_conf = np.bincount(ids, weights=conf, minlength=n_bins)
    sum_hit = np.bincount(ids, weights=hit, minlength=n_bins)
    # |sum_hit - sum_conf| / N == (n_b / N) |acc_b - conf_b|; empty bins contribute 0.
    return float(np.abs(sum_hit - sum_conf)[count > 0].sum() / n)


# PAPER: the metrics -------------------------------------------------------------------------
def brier(probs: object, labels: object) -> float:
    """Brier score (Brier 1950). Lower is better.

    For (n, C) input: ``(1/N) sum_i sum_k (p_ik - 1[y_i = k])^2``, in [0, 2].
    For binary (n,) input: the usual binary form ``(1/N) sum_i (p_i - y_i)^2``, in [0, 1]
    (half the two-column value; sklearn's ``brier_score_loss`` convention).

    Args:
        probs: (n, C) or (n,) probabilities.
        labels: (n,) int labels.

    Returns:
        The Brier score as a float.
    """
    p, y, binary = _check(probs, labels)
    onehot = np.eye(p.shape[1])[y]  # (n, C)
    score = float(np.mean(np.sum((p - onehot) ** 2, axis=1)))
    return score / 2.0 if binary else score


def log_loss(probs: object, labels: object, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood of the true class, ``-(1/N) sum_i log p_{i, y_i}``.

    Args:
        probs: (n, C) or (n,) probabilities.
        labels: (n,) int labels.
        eps: probabilities are clipped to ``[eps, 1]`` before the log so that a confident
            mistake costs ``-log(eps)`` instead of infinity (sklearn's convention).

    Returns:
        The log loss in nats.
    """
    if not (0.0 < eps < 1.0):
        raise ValueError(f"eps must lie in (0, 1), got {eps}")
    p, y, _ = _check(probs, labels)
    p_true = np.clip(p[np.arange(p.shape[0]), y], eps, 1.0)
    return float(-np.mean(np.log(p_true)))


def ece(probs: object, labels: object, n_bins: int = 15, binning: str = "width") -> float:
    """Top-label expected calibration error (Guo et al. 2017, eq. 3; Nixon et al. 2019).

    ``ECE = sum_b (n_b / N) |acc_b - conf_b|`` where conf is the top-label confidence
    ``max_k p_ik`` and acc is ``1[argmax_k p_ik = y_i]``.

    Args:
        probs: (n, C) or (n,) probabilities. Binary (n,) input is read as ``[1 - p, p]``,
            i.e. the top-label confidence ``max(p, 1 - p)`` (not torchmetrics' binary mode,
            which bins P(y = 1) against the label).
        labels: (n,) int labels.
        n_bins: number of bins.
        binning: "width" (equal-width bins on [0, 1]) or "mass" (equal-count bins, the
            "adaptive"/equal-mass ECE of Nixon et al. 2019).

    Returns:
        ECE in [0, 1].
    """
    n_bins = _check_bins(n_bins)
    if binning not in BINNINGS:
        raise ValueError(f"binning must be one of {BINNINGS}, got {binning!r}")
    p, y, _ = _check(probs, labels)
    conf = p.max(axis=1)  # (n,)
    hit = (p.argmax(axis=1) == y).astype(np.float64)  # (n,)
    ids = _width_bin_ids(conf, n_bins) if binning == "width" else _mass_bin_ids(conf, n_bins)
    return _binned_gap(conf, hit, ids)


def classwise_ece(probs: object, labels: object, n_bins: int = 15) -> float:
    """Classwise ECE (Kull et al. 2019): the mean over classes of each class's binned gap.

    ``cwECE = (1/K) sum_k sum_b (n_kb / N) |freq_k(b) - mean p_k(b)|`` with equal-width bins
    on ``p_k`` and ``freq_k(b)`` the fraction of bin members whose label is k.

    Args:
        probs: (n, C) or (n,) probabilities.
        labels: (n,) int labels.
        n_bins: equal-width bins per class.

    Returns:
        Classwise ECE in [0, 1].
    """
    n_bins = _check_bins(n_bins)
    p, y, _ = _check(probs, labels)
    gaps = [
        _binned_gap(p[:, k], (y == k).astype(np.float64), _width_bin_ids(p[:, k], n_bins))
        for k in range(p.shape[1])
    ]
    return float(np.mean(gaps))


def balance_score(probs: object, labels: object) -> float:
    """Balance score of Choi, Kim & Lee (arXiv 2309.06248), signed; 0 is ideal.

    Each prediction wins or loses by a gain/loss function ``f(p_hat, y)``. For a binary
    prediction with ``y_hat = 1[p_hat >= 0.5]``:

        f = 1 - p_hat   if p_hat >= 0.5 and y = 1      f = -p_hat      if p_hat >= 0.5 and y = 0
        f = p_hat       if p_hat <  0.5 and y = 0      f = p_hat - 1   if p_hat <  0.5 and y = 1

    which is ``f = 1[y_hat = y] - c`` with the decision's confidence ``c = max(p_hat, 1 - p_hat)``.
    Under a true probability p its expectation is ``p - p_hat`` (for p_hat >= 0.5), so
    ``|E f| = |p_hat - p|`` and the score is zero for a calibrated model without any binning.
    Balance score = ``(1/N) sum_i f(p_hat_i, y_i)`` = accuracy - mean confidence.
    Negative means over-confident, positive under-confident; ``abs()`` of it is the
    binning-free estimate of the calibration error the paper compares with ECE.

    Assumption: the formula above is taken from secondary summaries of the paper (the
    abstract gives no formula; summaries state ``G(p) = 0`` when ``p_hat = p`` and
    ``|g(q; p)| = |q - p|``, which this f satisfies). For C > 2 classes we use the top-label
    generalisation ``1[argmax = y] - max_k p_k`` (ties go to the lowest class index);
    binary (n,) input uses the paper's ``p_hat >= 0.5`` rule (a tie at 0.5 predicts 1).

    Args:
        probs: (n,) P(y = 1) or (n, C) probabilities.
        labels: (n,) int labels.

    Returns:
        The signed Balance score in [-1, 0.5].
    """
    p, y, binary = _check(probs, labels)
    if binary:
        y_hat = (p[:, 1] >= 0.5).astype(np.int64)
        conf = np.where(y_hat == 1, p[:, 1], p[:, 0])
    else:
        y_hat = p.argmax(axis=1)
        conf = p.max(axis=1)
    return float(np.mean((y_hat == y).astype(np.float64) - conf))


def reliability_diagram(
    probs: object, labels: object, n_bins: int = 15, title: str = "Reliability diagram"
) -> Figure:
    """Top-label reliability diagram (Guo et al. 2017, Fig. 1) with equal-width bins.

    Bars show each bin's accuracy, the diagonal is perfect calibration, and the red
    segments are the per-bin gaps; the title carries the ECE.

    Args:
        probs: (n, C) or (n,) probabilities.
        labels: (n,) int labels.
        n_bins: equal-width bins.
        title: axes title prefix.

    Returns:
        A matplotlib Figure (built without pyplot, so no global figure state).
    """
    n_bins = _check_bins(n_bins)
    p, y, _ = _check(probs, labels)
    conf = p.max(axis=1)
    hit = (p.argmax(axis=1) == y).astype(np.float64)
    ids = _width_bin_ids(conf, n_bins)
    count = np.bincount(ids, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc_b = np.bincount(ids, weights=hit, minlength=n_bins) / count
        conf_b = np.bincount(ids, weights=conf, minlength=n_bins) / count
    centers = (np.arange(n_bins) + 0.5) / n_bins
    filled = count > 0

    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(centers[filled], acc_b[filled], width=1.0 / n_bins, edgecolor="black",
           color="tab:blue", alpha=0.8, label="accuracy")
    ax.vlines(centers[filled], acc_b[filled], conf_b[filled], color="tab:red", lw=2, label="gap")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title} (ECE {_binned_gap(conf, hit, ids):.3f}, n={conf.shape[0]})")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
