"""Graph-on-Logits Distillation (GLD) from InfiGFusion, for a classifier student.

Wang et al. (2025), "InfiGFusion: Graph-on-Logits Distillation via Efficient
Gromov-Wasserstein for Model Fusion", arXiv 2505.13893.

The paper fuses several teacher LLMs into one student. For each model it

1. keeps the top-k logits of every output position (the rest set to 0),
2. sums their outer products over the positions into a co-activation graph
   ``G = sum_t z_t z_t^T`` (nodes = vocabulary channels, edges = joint activation),
3. compares the teacher and student graphs with the Gromov-Wasserstein (GW) distance,
   replaced by a sorting-based closed-form approximation that costs O(n log n) for the
   alignment instead of the O(n^4) of the exact quadratic problem.

Here the "vocabulary" is the C classes and the "positions" are the samples of a batch.

GW between two graphs with adjacency C1, C2 (n x n) and uniform node weights is

    GW(C1, C2) = min_T sum_{i,j,k,l} (C1[i,k] - C2[j,l])^2 T[i,j] T[k,l],

over couplings T with marginals 1/n. The approximation restricts T to the one permutation
that matches nodes by rank: sort the nodes of each graph by their weighted degree
(row sum), match the r-th node of one to the r-th node of the other, then evaluate the GW
objective under that permutation in closed form:

    GW_sort(C1, C2) = 1/n^2 * sum_{r,s} (C1[a_r, a_s] - C2[b_r, b_s])^2,   a = argsort(deg1), b = argsort(deg2).

Assumption: the paper's exact sorting key and graph normalisation are not in the abstract.
We sort by weighted degree, L1-normalise each graph (sum of entries = 1) so that teacher and
student graphs live on one scale, and build the graph from softmax probabilities rather than
raw logits (raw logits can be negative, which makes "co-activation" outer products
sign-ambiguous). A permutation coupling is feasible, so GW_sort >= the true GW; how close it
is to an exact solver is measured in tests and ``benchmarks/bench_gld.py``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from tasks.distill.losses.kd import kd, mean_teacher
from tasks.distill.losses.registry import register_loss

# --------------------------------------------------------------------------------------------
# PAPER: graph construction and the sorting-based GW approximation
# --------------------------------------------------------------------------------------------


def coactivation_graph(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Co-activation graph (C, C) of a batch of logits (B, C).

    Per row keep the top-k class probabilities (others 0), sum the outer products over the
    batch, and L1-normalise. Symmetric and non-negative.
    """
    p = F.softmax(logits, dim=-1)  # (B, C)
    k = min(top_k, p.shape[-1])
    idx = p.topk(k, dim=-1).indices  # (B, k)
    keep = torch.zeros_like(p).scatter_(1, idx, 1.0)  # (B, C) 0/1, no gradient through the choice
    pk = p * keep  # (B, C)
    g = pk.T @ pk  # (C, C) = sum_b pk_b pk_b^T
    return g / g.sum().clamp_min(1e-12)


def sort_alignment(g: torch.Tensor) -> torch.Tensor:
    """Node order (n,) int64 of a graph by ascending weighted degree (O(n log n))."""
    return g.sum(1).argsort(stable=True)


def gw_sort(c1: torch.Tensor, c2: torch.Tensor) -> torch.Tensor:
    """Sorting-based closed-form GW approximation between two (n, n) graphs (scalar).

    Differentiable in both graphs' entries (the permutation itself is piecewise constant).
    """
    if c1.shape != c2.shape or c1.ndim != 2 or c1.shape[0] != c1.shape[1]:
        raise ValueError(f"gw_sort needs two square graphs of one size, got {tuple(c1.shape)} and {tuple(c2.shape)}")
    a, b = sort_alignment(c1.detach()), sort_alignment(c2.detach())
    d = c1[a][:, a] - c2[b][:, b]  # (n, n) edge differences under the rank matching
    return (d * d).mean()


def gw_exact_pot(c1, c2) -> float:
    """GW between two graphs with uniform weights by POT's conditional-gradient solver.

    A local solver of the non-convex quadratic problem (the reference the paper compares
    to); returns the objective at its coupling, same (a - b)^2 loss as :func:`gw_sort`.
    """
    import numpy as np
    import ot

    c1, c2 = np.asarray(c1, dtype=np.float64), np.asarray(c2, dtype=np.float64)
    n1, n2 = c1.shape[0], c2.shape[0]
    return float(ot.gromov.gromov_wasserstein2(c1, c2, np.full(n1, 1 / n1), np.full(n2, 1 / n2), loss_fun="square_loss"))


def gw_best_permutation(c1: torch.Tensor, c2: torch.Tensor) -> float:
    """Brute-force minimum of the GW objective over all permutation couplings (n <= 8)."""
    import itertools

    n = c1.shape[0]
    if n > 8:
        raise ValueError(f"gw_best_permutation enumerates n! couplings; n = {n} is too large")
    perms = torch.tensor(list(itertools.permutations(range(n))))  # (n!, n)
    c2p = c2[perms[:, :, None], perms[:, None, :]]  # (n!, n, n): c2 relabelled by each permutation
    return float(((c1[None] - c2p) ** 2).mean(dim=(1, 2)).min())


# --------------------------------------------------------------------------------------------
# PAPER: the fusion loss
# --------------------------------------------------------------------------------------------


@register_loss("gld")
def gld(
    student,
    y,
    teachers,
    *,
    temperature: float = 4.0,
    ce_weight: float = 0.1,
    kd_weight: float = 0.9,
    gld_weight: float = 1.0,
    top_k: int = 5,
) -> torch.Tensor:
    """InfiGFusion's fusion objective on a classifier: CE + KD to the logit-averaged
    teachers + ``gld_weight`` * mean over teachers of ``GW_sort(G_teacher, G_student)``.

    ``gld_weight = 0`` is the plain logit-fusion baseline (KD to the teacher average).

    Assumption: the paper adds GLD to a token-level logit distillation on the fused teacher;
    we use Hinton KD on the logit average of the teachers as that base term, and scale the
    GW term by ``C^4`` (the graphs are L1-normalised, so raw GW values are ~1/C^4).
    """
    base = kd(student, y, [mean_teacher(teachers)], temperature=temperature, ce_weight=ce_weight, kd_weight=kd_weight)
    if gld_weight == 0:
        return base
    gs = coactivation_graph(student, top_k)  # (C, C)
    c = student.shape[-1]
    gw = torch.stack([gw_sort(coactivation_graph(t, top_k), gs) for t in teachers]).mean()
    return base + gld_weight * gw * c**4


# --------------------------------------------------------------------------------------------
# PLATFORM: the pipeline's approximation check and report cores
# --------------------------------------------------------------------------------------------
