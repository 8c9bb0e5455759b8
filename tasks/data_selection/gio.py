"""GIO: Gradient Information Optimization for training dataset selection (Everaert & Potts 2023;
seed 002_e77702a5ff075a7b.txt #199; round2_candidates.md §1.4).

Goal: pick pool points X so that the selected set's distribution matches a small unlabelled
target set T, by greedily minimising the k-NN estimate of KL(T || X) (Wang, Kulkarni & Verdú
2009), with T of n points and X of m points in R^d:

    KL(T || X) ~= d/n * sum_i log(nu_k(i) / rho_k(i)) + log(m / (n - 1))

where rho_k(i) is the distance of t_i to its k-th nearest neighbour in T (itself excluded) and
nu_k(i) its distance to the k-th nearest neighbour in X.

One greedy step (the reference code's loop, re-implemented): a free point v is moved by
gradient descent on KL(T || X u {v}); the unselected pool point nearest to v is added; the
loop stops when adding it makes the KL estimate rise (the interface allows fewer picks than the
budget). Only the target points whose k-th neighbour distance v would shrink depend on v:
with the k smallest distances per target point kept sorted (``D``, (n, k)), the new k-th
distance is ``min(D[:, k-1], max(D[:, k-2], |t_i - v|))``, so one step is O(n d) and the
state update after a pick is O(n k).

Assumption (the paper's initialisation of v is not in the abstract): v starts at the target
point worst covered by X (largest ``nu_k / rho_k``), where the gradient is non-zero; the
descent uses normalised steps of ``lr`` times the median target k-NN radius.
Assumption: with fewer than k labelled points, the first k picks are random pool points
(the reference starts from a random slice of the pool), scored with the KL after them.
"""

from __future__ import annotations

import numpy as np

from tasks.data_selection.selection import Pool, selector
from tasks.platform.errors import ReprolabError


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Euclidean distances."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def target_radii(target: np.ndarray, k: int) -> np.ndarray:
    """rho_k: (n,) distance of each target point to its k-th nearest other target point."""
    if len(target) <= k:
        raise ReprolabError(f"GIO needs more than k={k} target points, got {len(target)}")
    d = _pairwise(target, target)
    np.fill_diagonal(d, np.inf)
    return np.maximum(np.partition(d, k - 1, axis=1)[:, k - 1], 1e-12)


def kl_knn(target: np.ndarray, selected: np.ndarray, k: int, rho: np.ndarray | None = None) -> float:
    """The k-NN estimate of KL(target || selected) (module docstring); needs >= k selected points."""
    if len(selected) < k:
        raise ReprolabError(f"kl_knn needs >= k={k} selected points, got {len(selected)}")
    rho = target_radii(target, k) if rho is None else rho
    nu = np.maximum(np.partition(_pairwise(target, selected), k - 1, axis=1)[:, k - 1], 1e-12)
    return _kl(nu, rho, target.shape[1], len(selected))


def _kl(nu: np.ndarray, rho: np.ndarray, d: int, m: int) -> float:
    n = len(rho)
    return float(d / n * np.log(nu / rho).sum() + np.log(m / (n - 1)))


def gio_path(features: np.ndarray, target: np.ndarray, budget: int, candidates: np.ndarray, start: np.ndarray,
             rng: np.random.Generator, k: int = 5, steps: int = 50, lr: float = 0.1,
             patience: int | None = 0) -> tuple[list[int], list[float]]:
    """The greedy loop. Returns (picked positions in order, the KL estimate after each pick).

    Args:
        features: (N, d) pool; target: (n, d); candidates: positions that may be picked;
        start: positions already in X (labelled); rng: for the random start when ``len(start) < k``.
        patience: consecutive rises of the KL estimate tolerated; the next rise stops the loop and the
            trailing run of rises is dropped (0: stop at the first rise, the reference's ``increase``
            criterion; n > 0: its ``sequential_increase_tolerance``; None: never stop early).
    """
    # PAPER: the state is the k smallest distances of every target point to X, sorted
    n, d = target.shape
    rho = target_radii(target, k)
    radius = float(np.median(rho))
    D = np.full((n, k), np.inf)
    free = np.ones(len(features), bool)
    free[:] = False
    free[candidates] = True
    picks: list[int] = []
    kls: list[float] = []

    def add(p: int) -> None:
        nonlocal D
        dist = np.sqrt(((target - features[p]) ** 2).sum(1))
        D = np.sort(np.concatenate([D, dist[:, None]], 1), 1)[:, :k]
        free[p] = False

    for p in start:
        add(int(p))
    n_sel = len(start)
    if n_sel < k:  # random start (Assumption in the module docstring)
        first = rng.choice(np.flatnonzero(free), size=min(k - n_sel, budget), replace=False)
        for p in first:
            add(int(p))
            picks.append(int(p))
        n_sel += len(first)
        if n_sel < k:
            return picks, [float("nan")] * len(picks)
        kls = [_kl(D[:, -1], rho, d, n_sel)] * len(picks)
    current = _kl(D[:, -1], rho, d, n_sel)
    best, best_len, rises = current, len(picks), 0
    while len(picks) < budget and free.any():
        # PAPER: gradient descent of KL(T || X u {v}) over v
        v = target[int(np.argmax(D[:, -1] / rho))].copy()
        lo = D[:, -2] if k >= 2 else np.zeros(n)
        for _ in range(steps):
            diff = v - target  # (n, d)
            dist = np.maximum(np.sqrt((diff * diff).sum(1)), 1e-12)
            active = (dist < D[:, -1]) & (dist > lo)  # where log nu_k(i) = log |t_i - v|
            if not active.any():
                break
            grad = (d / n) * (diff[active] / (dist[active] ** 2)[:, None]).sum(0)
            norm = np.linalg.norm(grad)
            if norm == 0:
                break
            v -= lr * radius * grad / norm
        # PAPER: the nearest unselected pool point joins X
        dist_v = ((features - v) ** 2).sum(1)  # (N,) no copy of the pool per pick
        dist_v[~free] = np.inf
        p = int(np.argmin(dist_v))
        add(p)
        n_sel += 1
        new = _kl(D[:, -1], rho, d, n_sel)
        rises = rises + 1 if new > current else 0
        current = new
        picks.append(p)
        kls.append(new)
        if new <= best:
            best, best_len = new, len(picks)
        if patience is not None and rises > patience:
            del picks[best_len:], kls[best_len:]  # PAPER: stop; the rising run is not kept
            break
    return picks, kls


@selector("gio", needs=("features",), target_needs=("features",),
          cite="Everaert & Potts 2023, GIO: Gradient Information Optimization for Training Dataset Selection")
def gio(pool: Pool, budget: int, *, candidates: np.ndarray, labelled: np.ndarray, target: Pool | None,
        rng: np.random.Generator, k: int = 5, steps: int = 50, lr: float = 0.1,
        patience: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-NN KL descent towards the target set; score = KL estimate after the pick
    (smaller is better; it decreases along the pick order until GIO stops)."""
    if k < 1 or steps < 0 or lr <= 0 or (patience is not None and patience < 0):
        raise ReprolabError(f"gio: need k >= 1, steps >= 0, lr > 0, patience >= 0 or None; got k={k}, "
                            f"steps={steps}, lr={lr}, patience={patience}")
    feats = np.asarray(pool.view("features"), dtype=np.float64)
    tfeats = np.asarray(target.view("features"), dtype=np.float64)
    if feats.ndim != 2 or tfeats.ndim != 2 or feats.shape[1] != tfeats.shape[1]:
        raise ReprolabError(f"gio: pool features {feats.shape} and target features {tfeats.shape} must be "
                            "2-D with the same width")
    picks, kls = gio_path(feats, tfeats, budget, candidates, labelled, rng, k, steps, lr, patience)
    if picks and not np.isfinite(kls).all():
        raise ReprolabError(f"gio: budget {budget} is below k={k}; the KL estimate needs k selected points")
    return np.asarray(picks, dtype=np.int64), np.asarray(kls, dtype=np.float64)
