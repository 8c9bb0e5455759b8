"""Robust aggregate statistics over runs, after Agarwal et al., "Deep Reinforcement Learning
at the Edge of the Statistical Precipice" (NeurIPS 2021; library ``rliable``).

Our own implementation of the paper's definitions (rliable 1.2.0 does not import beside
pandas 3: its ``arch`` dependency fails). Notation, as in the paper (Sec. 4):

* ``scores``: (R, T) float array, R runs (seeds) x T tasks. An algorithm's score on task t in
  run r is ``scores[r, t]`` (normalised scores, so tasks are comparable).
* mean:    ``(1/T) sum_t mean_r scores[r, t]`` (mean of per-task means).
* median:  ``median_t mean_r scores[r, t]`` (median of per-task means).
* IQM:     interquartile mean, the 25 % trimmed mean of all R*T scores pooled (Sec. 4.3).
* optimality gap: ``gamma - mean(min(scores, gamma))`` (Sec. 4.3; lower is better).
* probability of improvement of X over Y (Sec. 4.4):
  ``P(X > Y) = (1/T) sum_t U_t / (R_x R_y)`` with U_t the Mann-Whitney U statistic of task t
  (pairs with x > y count 1, ties 1/2).
* stratified bootstrap (Sec. 4.1): resample runs with replacement *within each task*, then
  recompute the statistic; percentile confidence intervals.
* performance profile (Sec. 4.2): run-score distribution ``F(tau) = (1/(R T)) sum 1[score > tau]``.

Every statistic also has a vectorised form used by the bootstrap; the bootstrap is
vectorised over replicates and chunked so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from scipy import stats

__all__ = [
    "METRICS",
    "Interval",
    "aggregate",
    "aggregate_iqm",
    "aggregate_mean",
    "aggregate_median",
    "aggregate_optimality_gap",
    "bootstrap_ci",
    "check_scores",
    "difference_ci",
    "interval_estimates",
    "performance_profile",
    "plot_performance_profiles",
    "plot_probability_of_improvement",
    "poi_matrix",
    "probability_of_improvement",
    "probability_of_improvement_ci",
    "stratified_bootstrap",
]

_CHUNK_ELEMS = 4_000_000  # max floats materialised per bootstrap chunk (~32 MB)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its (1 - alpha) percentile bootstrap interval."""

    point: float
    lo: float
    hi: float

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.point, self.lo, self.hi)

    def contains(self, value: float) -> bool:
        return self.lo <= value <= self.hi


# PLATFORM: validation -----------------------------------------------------------------------
def check_scores(scores: object, name: str = "scores", min_runs: int = 1) -> np.ndarray:
    """Return ``scores`` as a finite (R, T) float64 array or raise ValueError naming the problem.

    Args:
        scores: array-like (R, T). Ragged nested lists are rejected.
        name: how to call the array in error messages.
        min_runs: minimum number of runs R (2 where a confidence interval is asked for).
    """
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"{name} must be a rectangular (runs x tasks) numeric array; got ragged or "
            f"non-numeric input ({err})"
        ) from None
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (runs x tasks), got shape {arr.shape}; "
            "use values.reshape(-1, 1) for a single task"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        r, t = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} has a non-finite value (NaN/inf) at run {r}, task {t}")
    if arr.shape[0] < min_runs:
        raise ValueError(
            f"{name} has {arr.shape[0]} run(s); a confidence interval needs at least {min_runs}"
        )
    return arr


def _seed_values(values: object, name: str) -> np.ndarray:
    """One arm's per-seed values (R,) as a checked (R, 1) score array with R >= 2."""
    shape = np.shape(np.asarray(values, dtype=object))
    if len(shape) != 1:
        raise ValueError(f"{name} must be 1-D (one value per seed), got shape {shape}")
    return check_scores([[v] for v in values], name=name, min_runs=2)


def _check_ci_args(reps: int, alpha: float) -> None:
    if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 1:
        raise ValueError(f"reps must be a positive integer, got {reps!r}")
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


# PAPER: aggregate metrics. Each takes (..., R, T) and reduces the last two axes. -------------
def aggregate_mean(scores: np.ndarray) -> np.ndarray | float:
    """Mean of per-task means. scores: (..., R, T) -> (...)."""
    return np.mean(np.mean(scores, axis=-2), axis=-1)


def aggregate_median(scores: np.ndarray) -> np.ndarray | float:
    """Median of per-task means. scores: (..., R, T) -> (...)."""
    return np.median(np.mean(scores, axis=-2), axis=-1)


def aggregate_iqm(scores: np.ndarray) -> np.ndarray | float:
    """Interquartile mean: 25 % trimmed mean of all runs and tasks pooled. (..., R, T) -> (...)."""
    flat = scores.reshape(*scores.shape[:-2], -1)
    return stats.trim_mean(flat, proportiontocut=0.25, axis=-1)


def aggregate_optimality_gap(scores: np.ndarray, gamma: float = 1.0) -> np.ndarray | float:
    """Optimality gap ``gamma - mean(min(score, gamma))``; scores (..., R, T) -> (...)."""
    return gamma - np.mean(np.minimum(scores, gamma), axis=(-2, -1))


METRICS: dict[str, Callable[[np.ndarray], np.ndarray | float]] = {
    "mean": aggregate_mean,
    "median": aggregate_median,
    "iqm": aggregate_iqm,
    "optimality_gap": aggregate_optimality_gap,
}


def _metric(metric: str | Callable[[np.ndarray], np.ndarray | float]) -> Callable:
    if callable(metric):
        return metric
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {sorted(METRICS)}")
    return METRICS[metric]


def aggregate(scores: object, metric: str = "iqm") -> float:
    """Point estimate of a named aggregate metric over a (R, T) score array."""
    fn = _metric(metric)
    return float(fn(check_scores(scores)))


# PAPER: stratified bootstrap -----------------------------------------------------------------
def stratified_bootstrap(
    scores: np.ndarray, reps: int, rng: np.random.Generator, max_chunk: int | None = None
):
    """Yield chunks of stratified-bootstrap replicates of ``scores``.

    Runs are resampled with replacement independently within each task (column), so every
    replicate keeps R runs per task (paper Sec. 4.1; rliable's ``StratifiedBootstrap``).

    Args:
        scores: (R, T) array.
        reps: total number of replicates.
        rng: numpy Generator (the only source of randomness).
        max_chunk: replicates per chunk (default: bounded by ~4M floats).

    Yields:
        (k, R, T) float arrays; the k's sum to ``reps``.
    """
    n_runs, n_tasks = scores.shape
    chunk = max_chunk or max(1, _CHUNK_ELEMS // (n_runs * n_tasks))
    done = 0
    while done < reps:
        k = min(chunk, reps - done)
        idx = rng.integers(0, n_runs, size=(k, n_runs, n_tasks))  # run index per (rep, slot, task)
        yield np.take_along_axis(scores[None, :, :], idx, axis=1)  # (k, R, T)
        done += k


def _percentile_interval(point: float, replicates: np.ndarray, alpha: float) -> Interval:
    lo, hi = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    return Interval(float(point), float(lo), float(hi))


def interval_estimates(
    score_dict: Mapping[str, object],
    metric: str | Callable[[np.ndarray], np.ndarray | float] = "iqm",
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Interval]:
    """Point estimate and stratified-bootstrap percentile CI of ``metric`` per algorithm.

    Args:
        score_dict: algorithm name -> (R, T) scores (R >= 2; R may differ between algorithms,
            T must not).
        metric: a name from ``METRICS`` or a callable reducing (..., R, T) -> (...).
        reps: bootstrap replicates.
        alpha: 1 - confidence level.
        seed: seed of the numpy Generator.

    Returns:
        algorithm name -> Interval.
    """
    _check_ci_args(reps, alpha)
    fn = _metric(metric)
    if not score_dict:
        raise ValueError("score_dict is empty")
    arrays = {k: check_scores(v, name=f"scores[{k!r}]", min_runs=2) for k, v in score_dict.items()}
    n_tasks = {a.shape[1] for a in arrays.values()}
    if len(n_tasks) > 1:
        raise ValueError(f"all algorithms must have the same number of tasks, got {sorted(n_tasks)}")
    rng = np.random.default_rng(seed)
    out = {}
    for name, arr in arrays.items():
        reps_values = np.concatenate(
            [np.atleast_1d(fn(chunk)) for chunk in stratified_bootstrap(arr, reps, rng)]
        )
        out[name] = _percentile_interval(float(fn(arr)), reps_values, alpha)
    return out


def bootstrap_ci(
    values: object,
    statistic: str = "mean",
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Bootstrap CI of one arm's per-seed values (a single task).

    Args:
        values: (R,) per-seed values, R >= 2.
        statistic: one of ``METRICS`` ("mean", "median", "iqm", "optimality_gap").
        reps: bootstrap replicates.
        alpha: 1 - confidence level (0.05 -> 95 % CI).
        seed: seed of the numpy Generator.

    Returns:
        (point, lo, hi).
    """
    scores = _seed_values(values, "values")
    return interval_estimates({"x": scores}, statistic, reps, alpha, seed)["x"].as_tuple()


def difference_ci(
    a: object,
    b: object,
    statistic: str = "mean",
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Interval:
    """CI of ``statistic(b) - statistic(a)`` for two independent arms' per-seed values.

    Each arm is resampled on its own (stratified bootstrap with one task), so the seeds of
    the two arms need not match; the interval excludes 0 when the arms differ.

    Args:
        a: (R_a,) values of arm A, R_a >= 2.
        b: (R_b,) values of arm B, R_b >= 2.
        statistic: one of ``METRICS``.
        reps, alpha, seed: bootstrap settings.

    Returns:
        Interval of the difference B - A.
    """
    _check_ci_args(reps, alpha)
    fn = _metric(statistic)
    arms = [_seed_values(a, "a"), _seed_values(b, "b")]
    rng = np.random.default_rng(seed)
    rep_a = np.concatenate([np.atleast_1d(fn(c)) for c in stratified_bootstrap(arms[0], reps, rng)])
    rep_b = np.concatenate([np.atleast_1d(fn(c)) for c in stratified_bootstrap(arms[1], reps, rng)])
    return _percentile_interval(float(fn(arms[1]) - fn(arms[0])), rep_b - rep_a, alpha)


def paired_difference(
    a: Mapping[object, float],
    b: Mapping[object, float],
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, float]:
    """Mean paired difference ``a[k] - b[k]`` over the common keys (seeds, or (task, seed)
    pairs) with its percentile-bootstrap CI (:func:`bootstrap_ci`).

    Returns:
        ``diff``, ``lo``, ``hi`` and the counts ``wins`` (#keys with a > b) and ``n``
        (#common keys); ``lo`` = ``hi`` = NaN when fewer than 2 keys are common.
    """
    keys = sorted(set(a) & set(b))
    d = np.asarray([a[k] - b[k] for k in keys], dtype=float)
    if d.size < 2:
        mean, lo, hi = (float(d.mean()) if d.size else float("nan")), float("nan"), float("nan")
    else:
        mean, lo, hi = bootstrap_ci(d, "mean", reps, alpha, seed)
    return {"diff": mean, "lo": lo, "hi": hi, "wins": int((d > 0).sum()), "n": int(d.size)}

# PAPER: probability of improvement -----------------------------------------------------------
def _poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) for batched arrays x (..., Rx, T), y (..., Ry, T) -> (...)."""
    diff = x[..., :, None, :] - y[..., None, :, :]  # (..., Rx, Ry, T)
    u = np.sum(diff > 0, axis=(-3, -2)) + 0.5 * np.sum(diff == 0, axis=(-3, -2))  # (..., T)
    return np.mean(u / (x.shape[-2] * y.shape[-2]), axis=-1)


def probability_of_improvement(x: object, y: object) -> float:
    """Probability that algorithm X beats Y on a randomly chosen task (paper Sec. 4.4).

    ``P(X > Y) = (1/T) sum_t U_t / (R_x R_y)``, U_t the Mann-Whitney U of task t (ties 1/2).

    Args:
        x: (R_x, T) scores of X.
        y: (R_y, T) scores of Y (same T).

    Returns:
        A probability in [0, 1]; 0.5 means no difference.
    """
    xa, ya = check_scores(x, "x"), check_scores(y, "y")
    if xa.shape[1] != ya.shape[1]:
        raise ValueError(f"x has {xa.shape[1]} tasks but y has {ya.shape[1]}")
    return float(_poi(xa, ya))


def probability_of_improvement_ci(
    x: object, y: object, reps: int = 2000, alpha: float = 0.05, seed: int = 0
) -> Interval:
    """P(X > Y) with a CI from independent stratified bootstraps of X and Y."""
    _check_ci_args(reps, alpha)
    xa, ya = check_scores(x, "x", min_runs=2), check_scores(y, "y", min_runs=2)
    if xa.shape[1] != ya.shape[1]:
        raise ValueError(f"x has {xa.shape[1]} tasks but y has {ya.shape[1]}")
    rng = np.random.default_rng(seed)
    # chunk so that the (k, Rx, Ry, T) comparison stays bounded
    per_rep = xa.shape[0] * ya.shape[0] * xa.shape[1]
    chunk = max(1, _CHUNK_ELEMS // per_rep)
    values = [
        _poi(bx, by)
        for bx, by in zip(
            stratified_bootstrap(xa, reps, rng, chunk), stratified_bootstrap(ya, reps, rng, chunk)
        )
    ]
    return _percentile_interval(_poi(xa, ya), np.concatenate(values), alpha)


def poi_matrix(
    score_dict: Mapping[str, object], reps: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise P(row > column) with CIs for every pair of algorithms.

    Returns:
        (names, point (A, A), lo (A, A), hi (A, A)); the diagonal is 0.5 with a zero-width CI.
    """
    names = list(score_dict)
    n = len(names)
    point, lo, hi = (np.full((n, n), 0.5) for _ in range(3))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i != j:
                iv = probability_of_improvement_ci(score_dict[a], score_dict[b], reps, alpha, seed)
                point[i, j], lo[i, j], hi[i, j] = iv.as_tuple()
    return names, point, lo, hi


# PAPER: performance profiles -----------------------------------------------------------------
def performance_profile(
    scores: object,
    taus: Sequence[float] | np.ndarray,
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run-score distribution ``F(tau) = fraction of runs (over all tasks) with score > tau``.

    Args:
        scores: (R, T) scores, R >= 2.
        taus: (K,) thresholds.
        reps, alpha, seed: stratified-bootstrap settings for the CI band.

    Returns:
        (profile (K,), lo (K,), hi (K,)).
    """
    _check_ci_args(reps, alpha)
    arr = check_scores(scores, min_runs=2)
    tau = np.asarray(taus, dtype=np.float64).reshape(-1)
    if tau.size == 0 or not np.all(np.isfinite(tau)):
        raise ValueError("taus must be a non-empty finite sequence")

    def profile(s: np.ndarray) -> np.ndarray:  # (..., R, T) -> (..., K)
        flat = s.reshape(*s.shape[:-2], -1)
        return np.mean(flat[..., None, :] > tau[:, None], axis=-1)

    rng = np.random.default_rng(seed)
    reps_values = np.concatenate(
        [profile(c) for c in stratified_bootstrap(arr, reps, rng, max(1, _CHUNK_ELEMS // (arr.size * tau.size)))]
    )  # (reps, K)
    lo, hi = np.quantile(reps_values, [alpha / 2, 1 - alpha / 2], axis=0)
    return profile(arr), lo, hi


# PLATFORM: plots for the reports -------------------------------------------------------------
def plot_probability_of_improvement(
    names: Sequence[str], point: np.ndarray, lo: np.ndarray, hi: np.ndarray,
    title: str = "P(row > column)",
) -> Figure:
    """Heat-map of a ``poi_matrix`` result, each cell annotated with point [lo, hi]."""
    n = len(names)
    fig = Figure(figsize=(1.6 + 1.5 * n, 1.2 + 1.1 * n))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(point, vmin=0.0, vmax=1.0, cmap="RdBu")
    for i in range(n):
        for j in range(n):
            if i != j:
                ax.text(j, i, f"{point[i, j]:.2f}\n[{lo[i, j]:.2f}, {hi[i, j]:.2f}]",
                        ha="center", va="center", fontsize=7)
    ax.set_xticks(range(n), list(names), rotation=30, ha="right")
    ax.set_yticks(range(n), list(names))
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def plot_performance_profiles(
    profiles: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    taus: np.ndarray,
    xlabel: str = "score threshold tau",
) -> Figure:
    """Performance profiles with CI bands; ``profiles``: name -> (profile, lo, hi)."""
    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot(1, 1, 1)
    for name, (prof, lo, hi) in profiles.items():
        (line,) = ax.plot(taus, prof, label=name)
        ax.fill_between(taus, lo, hi, color=line.get_color(), alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
