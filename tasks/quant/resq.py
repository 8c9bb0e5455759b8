"""ResQ's mixed-precision subspace quantization (Saxena et al., "ResQ: Mixed-Precision Quantization of Large
Language Models with Low-Rank Residuals", arXiv 2412.14363; catalogue ``seed_catalog_B.md`` #245).

Method (paper Sec. 3-4). For a linear's input ``x`` (n, d) with covariance ``C = x^T x / n``, PCA gives the
eigenvectors ``U`` sorted by eigenvalue. The top ``r`` (paper: r = d/8) span the high-variance subspace ``U_h``,
the rest ``U_l``. A random orthogonal rotation is applied inside each subspace (``R_h`` r x r, ``R_l``
(d-r) x (d-r)), giving the orthogonal projection

    P = [U_l R_l | U_h R_h]            (d, d), columns: d - r low-precision, then r high-precision
    y = x W^T = (x P)(W P)^T           (exact in full precision: P P^T = I)

and the low block of ``x P`` / ``W P`` is quantized to 4 bits, the high block to 8 bits (weights per output
channel and block, activations per token and block). Controls (research note sec. 2.3): a *random* r-dim
subspace (``subspace="random"``), the top-variance *channels* without rotation (``"channels"``), rotation
only at uniform 4 bits (``r = 0``), and a uniform "4.5-bit" quantizer (:func:`quant_levels` with 23 levels,
log2 23 = 4.52 bits >= the 4.5 bits ResQ averages at r = d/8).

Assumption (our simplification): the projection is per linear input and applied online (as SpinQuant's R4),
not one basis per residual stream merged into the weights as the paper does; this can only help the
subspace arms, equally for PCA and the random-subspace control.

Shapes: ``x`` (n, d); weights (out, d) as ``nn.Linear``; ``P`` (d, d) orthogonal, applied as ``x P``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tasks.quant.fakequant import WeightQuant, quant_act, rtn, weight_bits
from tasks.quant.rotation import random_orthogonal

SUBSPACES = ("pca", "random", "channels")


def pca_basis(x: Tensor) -> tuple[Tensor, Tensor]:
    """(eigenvectors (d, d) as columns, eigenvalues (d,)) of ``x^T x / n``, sorted by decreasing variance, fp64."""
    x = x.reshape(-1, x.shape[-1]).double()
    vals, vecs = torch.linalg.eigh(x.T @ x / x.shape[0])
    order = torch.argsort(vals, descending=True)
    return vecs[:, order], vals[order]


def resq_projection(x: Tensor, r: int, subspace: str, generator: torch.Generator, rotate: bool = True) -> Tensor:
    """The orthogonal ``P`` (d, d): first ``d - r`` columns the low-precision subspace, last ``r`` the 8-bit one.

    ``subspace``: ``"pca"`` (top-r principal directions of ``x``), ``"random"`` (a Haar-random r-dim subspace),
    ``"channels"`` (the r input channels of largest second moment; never rotated: a permutation).
    ``rotate``: the random rotation inside each subspace (ResQ's; not for ``"channels"``).
    """
    d = x.shape[-1]
    if not 0 <= r <= d:
        raise ValueError(f"ResQ rank r={r} must be in [0, d={d}]")
    if subspace not in SUBSPACES:
        raise ValueError(f"unknown ResQ subspace {subspace!r}; known: {list(SUBSPACES)}")
    if subspace == "channels":
        second = x.reshape(-1, d).double().pow(2).mean(0)
        top = torch.argsort(second, descending=True)[:r]
        rest = torch.tensor([i for i in range(d) if i not in set(top.tolist())], dtype=torch.long)
        return torch.eye(d, dtype=torch.float64)[:, torch.cat([rest, top])]
    basis = pca_basis(x)[0] if subspace == "pca" else random_orthogonal(d, generator)
    high, low = basis[:, :r], basis[:, r:]
    if rotate:
        low = low @ random_orthogonal(d - r, generator) if d - r else low
        high = high @ random_orthogonal(r, generator) if r else high
    return torch.cat([low, high], 1).contiguous()


def quant_levels(x: Tensor, levels: int) -> Tensor:
    """Per-row (last dim) symmetric fake quantization to an odd number of ``levels`` (e.g. 23 = 4.52 bits):
    ``s = max|x| / ((levels - 1) / 2)``, ``x_hat = s round(x / s)``."""
    if levels < 3 or levels % 2 == 0:
        raise ValueError(f"levels must be odd and >= 3, got {levels}")
    half = (levels - 1) // 2
    s = x.abs().amax(-1, keepdim=True) / half
    s = torch.where(s == 0, torch.ones_like(s), s)
    return torch.clamp(torch.round(x / s), -half, half) * s


class MixedQuantLinear(nn.Module):
    """``y = Q_lo(x P)[:, :d-r] W_lo^T + Q_hi(x P)[:, d-r:] W_hi^T`` with fake-quantized ``W_lo``, ``W_hi`` (the
    column blocks of ``W P``); ``act`` = (low, high) activation bits, or ``levels`` for the uniform control."""

    def __init__(self, weight: Tensor, proj: Tensor, r: int, act: tuple[int | None, int | None] = (4, 8),
                 levels: int | None = None):
        super().__init__()
        self.register_buffer("weight", weight.float().contiguous())
        self.register_buffer("proj", proj.float().contiguous())
        self.k, self.act, self.levels = proj.shape[0] - r, act, levels

    def forward(self, x: Tensor) -> Tensor:
        xp = x @ self.proj
        if self.levels is not None:
            return quant_levels(xp, self.levels) @ self.weight.T
        lo, hi = quant_act(xp[..., : self.k], self.act[0]), xp[..., self.k :]
        y = lo @ self.weight[:, : self.k].T
        return y if hi.shape[-1] == 0 else y + quant_act(hi, self.act[1]) @ self.weight[:, self.k :].T


def mixed_layer(w: Tensor, proj: Tensor, r: int, bits: tuple[int, int], act_bits: tuple[int | None, int | None],
                levels: int | None = None, what: str = "weight") -> tuple[MixedQuantLinear, float]:
    """(the fake-quant layer, exact weight storage bits) of ``w`` (out, d) under projection ``proj``.

    Weights per output channel, symmetric: the low block at ``bits[0]``, the high block at ``bits[1]`` (one fp16
    scale per row and block); with ``levels`` the whole ``W P`` uses :func:`quant_levels` (log2(levels) bits per
    code, one scale per row)."""
    wp = w.double() @ proj.double()
    out, d = wp.shape
    if levels is not None:
        wq = quant_levels(wp, levels)
        return MixedQuantLinear(wq, proj, 0, levels=levels), out * d * math.log2(levels) + out * 16
    k = d - r
    parts, nbits = [], 0
    for block, b in ((wp[:, :k], bits[0]), (wp[:, k:], bits[1])):
        if block.shape[1]:
            fmt = WeightQuant(bits=b, group=None, symmetric=True)
            parts.append(rtn(block.float(), fmt, what).dequant)
            nbits += weight_bits(tuple(block.shape), fmt)
    return MixedQuantLinear(torch.cat(parts, 1), proj, r, act_bits), float(nbits)
