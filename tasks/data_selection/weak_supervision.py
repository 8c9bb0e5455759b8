"""Data selection under weak supervision (Kolossov, Montanari & Tandon 2023, "Towards a statistical
theory of data selection under weak supervision"; seed 003_49ae51092b0cdefc.txt #8;
round2_candidates.md §1.3).

Setting: N unlabelled pool points; a *surrogate* model (weaker than the one we will train, e.g.
fitted on a few separate labels) gives each a probability ``p_i``. We may label n < N of them.
Each point is kept with an inclusion probability ``pi_i`` that depends on the surrogate only
("non-reactive" selection), with ``sum_i pi_i = n``, then the model is fitted on the kept points
either *unweighted* (weight 1) or *inverse-probability reweighted* (weight ``1 / pi_i``, the
"unbiased" choice: the reweighted empirical risk is unbiased for the full-sample risk).

Schemes (``pi_i`` proportional to a surrogate score, capped at 1 with the excess mass
redistributed so the sum stays n):
    * ``weak_uncertainty``: score ``u_i ** alpha`` with ``u_i = p_i (1 - p_i)`` (binary) or
      ``1 - sum_c p_ic**2`` (multi-class); alpha > 0 favours hard (uncertain) points, alpha < 0
      easy ones, alpha = 0 is uniform.
    * ``weak_influence``: influence-function subsampling for logistic regression: score
      ``sqrt(p_i (1 - p_i) x_i^T H^-1 x_i)``, the expected H^-1-norm of point i's loss gradient
      under the surrogate's labels, with ``H = mean_j p_j (1 - p_j) x_j x_j^T + ridge * I`` (an
      intercept column is appended to x).
      Assumption: the paper's influence scheme uses the influence of a point on the fitted
      parameters; without labels we take its expectation under the surrogate (labels are what
      we are selecting to acquire), which gives this leverage-like closed form.

Sampling: systematic probability-proportional-to-size sampling (random order, one uniform
start), which keeps exactly n points and gives every point exactly its ``pi_i`` inclusion
probability, so the ``1 / pi_i`` weights are the exact Horvitz-Thompson weights. (The paper's
Bernoulli sampling has a random sample size; the interface needs at most ``budget`` picks.)

Every selector's score column is the **training weight** of the pick: 1 (unweighted) or
``1 / pi_i`` (``reweight=True``).
"""

from __future__ import annotations

import numpy as np

from tasks.data_selection.selection import Pool, selector
from tasks.platform.errors import ReprolabError


def inclusion_probabilities(score: np.ndarray, n: int) -> np.ndarray:
    """(N,) ``pi`` proportional to ``score`` (> 0), each <= 1, summing to ``n``.

    Points whose proportional share exceeds 1 get pi = 1 and the rest is rescaled over the
    others, repeated until no share exceeds 1.
    """
    s = np.asarray(score, dtype=np.float64)
    if s.ndim != 1 or not (np.isfinite(s).all() and (s > 0).all()):
        raise ReprolabError("inclusion_probabilities: scores must be a 1-D array of finite positive values")
    if not 1 <= n <= s.size:
        raise ReprolabError(f"inclusion_probabilities: n={n} must be in [1, {s.size}]")
    pi = np.zeros_like(s)
    full = np.zeros(s.size, bool)
    while True:
        rest = n - full.sum()
        pi[~full] = rest * s[~full] / s[~full].sum()
        pi[full] = 1.0
        over = (pi > 1.0) & ~full
        if not over.any():
            return np.minimum(pi, 1.0)
        full |= over


def systematic_sample(pi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions drawn by systematic PPS sampling: exactly ``round(sum(pi))`` of them, point i
    included with probability exactly ``pi[i]`` (random order first, then one uniform start)."""
    order = rng.permutation(pi.size)
    edges = np.concatenate([[0.0], np.cumsum(pi[order])])
    n = int(round(edges[-1]))
    points = rng.uniform() + np.arange(n)
    # point j falls in (edges[i], edges[i+1]] of exactly one i; pi <= 1 makes the i distinct
    hit = np.searchsorted(edges, points, side="left") - 1
    return order[np.clip(hit, 0, pi.size - 1)]


def surrogate_uncertainty(probs: np.ndarray) -> np.ndarray:
    """(N,) ``p (1 - p)`` for (N,) binary probabilities, ``1 - sum_c p_c**2`` for (N, C)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 1:
        return p * (1.0 - p)
    return 1.0 - (p * p).sum(1)


def influence_scores(features: np.ndarray, probs: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """(N,) ``sqrt(p (1-p) x^T H^-1 x)`` for binary logistic regression (module docstring)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1:
        raise ReprolabError(f"weak_influence needs binary surrogate_probs of shape (N,), got {p.shape}")
    x = np.concatenate([np.asarray(features, dtype=np.float64), np.ones((len(p), 1))], 1)
    w = p * (1.0 - p)
    h = (x * w[:, None]).T @ x / len(p) + ridge * np.eye(x.shape[1])
    lev = np.einsum("ij,ji->i", x, np.linalg.solve(h, x.T))
    return np.sqrt(np.maximum(w * lev, 0.0))


def _draw(score: np.ndarray, budget: int, candidates: np.ndarray, rng: np.random.Generator, reweight: bool,
          floor: float) -> tuple[np.ndarray, np.ndarray]:
    # PAPER: non-reactive selection with pi ∝ score; unweighted or 1/pi weights
    pi = inclusion_probabilities(np.maximum(score, floor), budget)
    picked = systematic_sample(pi, rng)
    weights = 1.0 / pi[picked] if reweight else np.ones(picked.size)
    return candidates[picked], weights


@selector("weak_uncertainty", needs=("surrogate_probs",),
          cite="Kolossov, Montanari & Tandon 2023, data selection under weak supervision")
def weak_uncertainty(pool: Pool, budget: int, *, candidates: np.ndarray, labelled: np.ndarray, target: Pool | None,
                     rng: np.random.Generator, alpha: float = 1.0, reweight: bool = False,
                     floor: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """pi ∝ surrogate uncertainty ** alpha; score = training weight (1 or 1/pi)."""
    if not floor > 0:
        raise ReprolabError(f"weak_uncertainty: floor must be > 0, got {floor!r}")
    u = np.maximum(surrogate_uncertainty(pool.view("surrogate_probs")[candidates]), floor)
    return _draw(u ** float(alpha), budget, candidates, rng, reweight, floor)


@selector("weak_influence", needs=("features", "surrogate_probs"),
          cite="Kolossov, Montanari & Tandon 2023 (influence-function subsampling baseline)")
def weak_influence(pool: Pool, budget: int, *, candidates: np.ndarray, labelled: np.ndarray, target: Pool | None,
                   rng: np.random.Generator, reweight: bool = True, ridge: float = 1e-3,
                   floor: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """pi ∝ expected influence norm under the surrogate; score = training weight (1 or 1/pi)."""
    if not (floor > 0 and ridge >= 0):
        raise ReprolabError(f"weak_influence: need floor > 0 and ridge >= 0, got floor={floor!r}, ridge={ridge!r}")
    s = influence_scores(pool.view("features")[candidates], pool.view("surrogate_probs")[candidates], ridge)
    return _draw(s, budget, candidates, rng, reweight, floor)
