"""Core-set selection: greedy k-center and robust k-center with an outlier budget.

Sener & Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set Approach"
(ICLR 2018), Sec. 4.2. The core-set loss of the labelled set s is bounded by its covering
radius ``delta_s = max_i min_{j in s} ||x_i - x_j||`` over the pool, so a batch ``b`` is picked
to minimise the radius of ``s + b`` (the k-center problem, NP-hard).

* ``kcenter`` — Algorithm 1, the greedy 2-approximation: repeatedly add the point farthest from
  its nearest centre, ``u = argmax_i min_{j in s} d(x_i, x_j)``. We keep the vector
  ``min_dist[i] = min_{j in s} d(x_i, x_j)`` and update it with the new centre only:
  ``min_dist = minimum(min_dist, d(x, x_u))`` — O(n d) per pick instead of the O(n |s| d) of
  recomputing every pool-centre distance (:func:`kcenter_greedy_recompute`, the reference
  the tests and ``make bench-data`` compare against; same distances, same picks). The vector
  holds *squared* distances in the Gram form ``|x|^2 - 2 x.x_u + |x_u|^2`` with the row norms
  computed once (one BLAS mat-vec per pick, no (n, d) temporary; :func:`sq_distances_to`);
  the argmax is that of the distances (sqrt is monotone), only the picked radius is rooted.
  ``make bench-data-peers`` checks the picks equal scikit-activeml's ``CoreSet`` and times both.
  Score of a pick = its distance to the nearest centre when picked = the covering radius just
  before the pick (non-increasing along the batch).
* ``robust_kcenter`` — Algorithm 2 (robust k-center): binary search on the radius ``delta``
  between ``delta_greedy / 2`` and ``delta_greedy`` for the smallest radius at which ``b`` new
  centres cover every pool point but at most ``Xi`` outliers.
  Assumption (the paper's feasibility oracle is a MIP solved with Gurobi, too heavy here): we
  decide feasibility with the greedy max-coverage heuristic — add the candidate whose
  ``delta``-ball holds the most uncovered points, ``b`` times — and call ``delta`` feasible when
  at most ``Xi`` points stay uncovered. The heuristic may miss a MIP-feasible radius (never the
  other way round), so our radius is >= the MIP's; when no radius in the search is feasible,
  the greedy solution is returned (feasible at ``delta_greedy`` with 0 outliers). It needs
  the (n, n) pool distance matrix (float32): pools up to ~5k points.
  Score of a pick = the number of uncovered points its ball covered when picked.
"""

from __future__ import annotations

import numpy as np

from tasks.data_selection.selection import Pool, selector
from tasks.platform.errors import ReprolabError


def distances_to(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(n,) Euclidean distances of the rows of ``x`` (n, d) to one point ``c`` (d,).

    NOTE: the difference form (not ``|x|^2 + |c|^2 - 2 x.c``): exact to rounding; the
    reference of :func:`covering_radius` (the greedy picks use :func:`sq_distances_to`).
    """
    diff = x - c
    return np.sqrt(np.einsum("ij,ij->i", diff, diff))


def sq_distances_to(x: np.ndarray, sq: np.ndarray, j: int) -> np.ndarray:
    """(n,) squared Euclidean distances of the rows of ``x`` (n, d) to row ``j``, Gram form.

    ``sq`` = the row norms ``einsum("ij,ij->i", x, x)``, computed once by the caller. The order
    of operations is scikit-learn's ``euclidean_distances`` (``-2 x.c``, ``+ |x|^2``, ``+ |c|^2``,
    clipped at 0), so the same rounding as peers built on it; cancellation makes a tiny distance
    (far below the norms) inexact, which moves only near-ties among far-apart points.
    """
    d2 = x @ x[j]
    d2 *= -2.0
    d2 += sq
    d2 += sq[j]
    return np.maximum(d2, 0.0, out=d2)


def kcenter_greedy(x: np.ndarray, centres: np.ndarray, budget: int, first: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center (Sener & Savarese Alg. 1) with an incrementally updated min-distance vector.

    Args:
        x: (n, d) float features of the whole pool.
        centres: positions already labelled (may be empty).
        budget: number of new centres b.
        first: the first pick when ``centres`` is empty (the paper starts from the labelled set;
            with none, a start point is needed; callers draw it from their seed).

    Returns:
        (picks (b,) positions in pick order, radius (b,): each pick's distance to its nearest
        centre at pick time; ``inf`` for ``first``).
    """
    # PAPER: Algorithm 1 — u = argmax_{i in pool \ s} min_{j in s} Delta(x_i, x_j); s = s + {u}.
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    sq = np.einsum("ij,ij->i", x, x)
    min_dist = np.full(n, np.inf)  # squared distance to the nearest centre
    for j in np.asarray(centres, dtype=np.int64):  # O(n d) per existing centre, once
        np.minimum(min_dist, sq_distances_to(x, sq, j), out=min_dist)
    # NOTE: a centre is marked -1 (distances are >= 0, so the minimum keeps it): the argmax
    # then never returns a centre, even when every point left duplicates one (all at 0).
    min_dist[np.asarray(centres, dtype=np.int64)] = -1.0
    picks, radius = [], []
    if len(centres) == 0:
        if first is None:
            raise ReprolabError("kcenter_greedy: no labelled centre and no first point given")
        picks.append(int(first))
        radius.append(np.inf)
        np.minimum(min_dist, sq_distances_to(x, sq, int(first)), out=min_dist)
        min_dist[first] = -1.0
    while len(picks) < budget:
        u = int(np.argmax(min_dist))  # first index on ties
        picks.append(u)
        radius.append(float(np.sqrt(min_dist[u])))
        np.minimum(min_dist, sq_distances_to(x, sq, u), out=min_dist)  # the incremental update
        min_dist[u] = -1.0
    return np.asarray(picks, dtype=np.int64), np.asarray(radius)


def kcenter_greedy_recompute(x: np.ndarray, centres: np.ndarray, budget: int, first: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reference greedy k-center: every pick recomputes all pool-to-centre distances.

    The way a textbook writes Algorithm 1: O(n |s| d) per pick. Same distance function as
    :func:`kcenter_greedy`, so both return the same picks; kept for the parity test and the
    speed comparison of ``make bench-data``, not for use. (scikit-activeml 1.0.1's
    ``k_greedy_center`` keeps the min-distance vector too, one ``pairwise_distances_argmin_min``
    call per pick: ``make bench-data-peers`` compares with it.)
    """
    x = np.asarray(x, dtype=np.float64)
    sq = np.einsum("ij,ij->i", x, x)
    s = [int(j) for j in centres]
    picks, radius = [], []
    if not s:
        if first is None:
            raise ReprolabError("kcenter_greedy_recompute: no labelled centre and no first point given")
        s.append(int(first))
        picks.append(int(first))
        radius.append(np.inf)
    while len(picks) < budget:
        d = np.stack([sq_distances_to(x, sq, j) for j in s], axis=1)  # (n, |s|), all pairs again
        min_dist = d.min(axis=1)
        min_dist[s] = -1.0  # centres are never picked again (as in kcenter_greedy)
        u = int(np.argmax(min_dist))
        picks.append(u)
        radius.append(float(np.sqrt(min_dist[u])))
        s.append(u)
    return np.asarray(picks, dtype=np.int64), np.asarray(radius)


def covering_radius(x: np.ndarray, centres: np.ndarray) -> float:
    """``max_i min_{j in centres} ||x_i - x_j||`` over all rows of ``x`` (inf with no centre)."""
    x = np.asarray(x, dtype=np.float64)
    min_dist = np.full(x.shape[0], np.inf)
    for j in np.asarray(centres, dtype=np.int64):
        np.minimum(min_dist, distances_to(x, x[j]), out=min_dist)
    return float(min_dist.max())


def pairwise_distances(x: np.ndarray) -> np.ndarray:
    """(n, n) float32 Euclidean distances (Gram form, clipped at 0; diagonal exactly 0)."""
    x = np.asarray(x, dtype=np.float64)
    sq = np.einsum("ij,ij->i", x, x)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2).astype(np.float32)


def greedy_cover(dist: np.ndarray, centres: np.ndarray, candidates: np.ndarray, budget: int,
                 delta: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Max-coverage greedy at radius ``delta``: ``budget`` candidates, each covering the most
    still-uncovered points. Returns (picks, newly covered count per pick, points left uncovered)."""
    ball = dist <= delta  # (n, n) bool: ball[c, i] = point i within delta of c
    uncovered = ~ball[np.asarray(centres, dtype=np.int64)].any(axis=0) if len(centres) else np.ones(dist.shape[0], bool)
    gain = ball[:, uncovered].sum(axis=1).astype(np.int64)  # uncovered points each ball holds
    is_cand = np.zeros(dist.shape[0], bool)
    is_cand[candidates] = True
    picks, gains = [], []
    for _ in range(budget):
        g = np.where(is_cand, gain, -1)
        c = int(np.argmax(g))
        picks.append(c)
        gains.append(int(g[c]))
        is_cand[c] = False
        newly = ball[c] & uncovered
        if newly.any():
            gain -= ball[:, newly].sum(axis=1)  # those points no longer count for any ball
            uncovered &= ~newly
    return np.asarray(picks, dtype=np.int64), np.asarray(gains, dtype=np.float64), int(uncovered.sum())


def robust_kcenter(x: np.ndarray, centres: np.ndarray, candidates: np.ndarray, budget: int, outliers: int,
                   first: int | None = None, iters: int = 12) -> tuple[np.ndarray, np.ndarray, float]:
    """Robust k-center (Sener & Savarese Alg. 2) with a greedy feasibility oracle (module docstring).

    Returns (picks, score per pick, radius delta of the returned solution).
    """
    # PAPER: start from the greedy solution; delta_2OPT = its radius; search [delta/2, delta].
    g_picks, _ = kcenter_greedy(x, centres, budget, first)
    delta_greedy = covering_radius(x, np.concatenate([np.asarray(centres, dtype=np.int64), g_picks]))
    dist = pairwise_distances(x)
    best = (g_picks, np.zeros(budget), delta_greedy)
    lb, ub = delta_greedy / 2.0, delta_greedy
    for _ in range(iters):
        mid = (lb + ub) / 2.0
        picks, gains, left = greedy_cover(dist, centres, candidates, budget, mid)
        if left <= outliers:  # feasible: at most Xi points outside every ball
            best, ub = (picks, gains, mid), mid
        else:
            lb = mid
    return best


def _first(candidates: np.ndarray, labelled: np.ndarray, rng: np.random.Generator) -> int | None:
    return None if len(labelled) else int(rng.choice(candidates))


@selector("kcenter", needs=("features",), cite="Sener & Savarese 2018, Alg. 1 (greedy k-center)")
def _kcenter(pool: Pool, budget: int, *, candidates, labelled, target, rng):
    # NOTE: candidates = every unlabelled position; kcenter_greedy never returns a centre.
    picks, radius = kcenter_greedy(pool.view("features"), labelled, budget, _first(candidates, labelled, rng))
    # the first pick of an empty labelled set has no radius: score it above every other pick
    radius = np.where(np.isinf(radius), np.nanmax(np.append(radius[np.isfinite(radius)], 0.0)) + 1.0, radius)
    return picks, radius


@selector("robust_kcenter", needs=("features",), cite="Sener & Savarese 2018, Alg. 2 (robust k-center; greedy oracle)")
def _robust_kcenter(pool: Pool, budget: int, *, candidates, labelled, target, rng, outlier_fraction: float = 0.01,
                    iters: int = 12):
    if not 0.0 <= outlier_fraction < 1.0:
        raise ReprolabError(f"robust_kcenter: outlier_fraction must be in [0, 1), got {outlier_fraction!r}")
    xi = int(np.floor(outlier_fraction * len(pool)))
    picks, gains, _ = robust_kcenter(pool.view("features"), labelled, candidates, budget, xi,
                                     _first(candidates, labelled, rng), iters)
    return picks, gains
