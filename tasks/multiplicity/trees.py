"""Exhaustive enumeration of sparse decision trees over binary features (depth <= 2), for the
Rashomon ratio (Semenova, Rudin & Parr, "On the Existence of Simpler Machine Learning Models",
FAccT 2022; seed 003 #36) where the hypothesis space is finite and can be listed.

The hypothesis space F: every tree of depth <= 2 over the binary features of ``x``: a single
leaf; a root split on feature f whose two children are each a leaf or a split on a feature
g != f. Each leaf predicts the majority label of the training rows it captures (a tie or an empty
leaf does not change its error count). The objective is the sparse-tree objective of
GOSDT/TreeFARMS: misclassification rate + ``lam`` x number of leaves. With the objectives of
all of F, :func:`tasks.multiplicity.metrics.rashomon_ratio` gives the exact Rashomon ratio
``|{f : obj(f) <= obj* + eps}| / |F|``.

Assumption: trees are counted as structures (splitting on f then g and on g then f are two
trees even when they compute the same function), as TreeFARMS counts them; a split may
repeat no feature on its path (such a child would capture no rows).
"""

from __future__ import annotations

import numpy as np

from tasks.multiplicity.metrics import MultiplicityError


def _leaf(y: np.ndarray, mask: np.ndarray) -> tuple[int, int]:
    """(majority label, misclassified rows) of a leaf capturing the rows in ``mask`` (ties: 0;
    a tie or an empty leaf does not change the error count)."""
    pos, n = int(y[mask].sum()), int(mask.sum())
    return int(2 * pos > n), min(pos, n - pos)


def depth2_tree_objectives(x: object, y: object, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Objective (error rate + ``lam`` x leaves) of every tree of depth <= 2 over binary ``x``.

    Args:
        x: (n, m) 0/1 features. y: (n,) 0/1 labels. lam: leaf penalty, >= 0.

    Returns:
        objectives (1 + m^3,): the single leaf first, then for each root feature f the m x m
        grid of (true child, false child), each child a leaf or a split on g != f;
        redundant (1 + m^3,) bool: the tree has a split into two leaves that misclassifies no
        fewer rows than one leaf in its place (two leaves of the same label, or a tie). TreeFARMS
        leaves such trees out of its Rashomon set (checked against treefarms 0.2.4 in
        benchmarks/bench_multiplicity_peers.py), so ``~redundant`` is the space it counts.
    """
    xa, ya = np.asarray(x), np.asarray(y)
    if xa.ndim != 2 or ya.shape != (xa.shape[0],) or xa.shape[0] == 0 or xa.shape[1] == 0:
        raise MultiplicityError(f"x must be (n >= 1, m >= 1) and y (n,), got {xa.shape} and {ya.shape}")
    if not (np.isin(xa, (0, 1)).all() and np.isin(ya, (0, 1)).all()):
        raise MultiplicityError("x and y must be 0/1")
    if not (np.isfinite(lam) and lam >= 0):
        raise MultiplicityError(f"lam must be a finite number >= 0, got {lam}")
    xb, yb = xa.astype(bool), ya.astype(np.int64)
    n, m = xb.shape
    root_err = _leaf(yb, np.ones(n, bool))[1]
    obj, red = [root_err / n + lam], [False]
    for f in range(m):
        sides = []
        for side in (xb[:, f], ~xb[:, f]):
            err = _leaf(yb, side)[1]
            opts = [(err, 1, False)]  # (errors, leaves, redundant)
            for g in range(m):
                if g != f:
                    e2 = _leaf(yb, side & xb[:, g])[1] + _leaf(yb, side & ~xb[:, g])[1]
                    opts.append((e2, 2, e2 >= err))
            sides.append(opts)
        for e1, l1, r1 in sides[0]:
            for e2, l2, r2 in sides[1]:
                obj.append((e1 + e2) / n + lam * (l1 + l2))
                red.append(r1 or r2 or (l1 == l2 == 1 and e1 + e2 >= root_err))
    return np.asarray(obj), np.asarray(red)
