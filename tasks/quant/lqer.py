"""LQER / L2QER pieces (Zhang et al., ICML 2024; the method, its assumptions and the paper pipeline are in
:mod:`tasks.papers.lqer`): the activation scale ``s``, the rank-k factors of the (scaled) quantization error,
the share of the error a rank-k adapter captures, and the 8-bit fake quantization of the factors. Shared
layer, so the peer benchmark (``benchmarks/bench_quant_peers.py``) runs the same code as the paper."""

from __future__ import annotations

import torch
from torch import Tensor

from tasks.quant.fakequant import WeightQuant, rtn, weight_bits

__all__ = ["activation_scale", "lqer_factors", "quant_factors", "top_share"]


def activation_scale(x: Tensor, batch_rows: int) -> Tensor:
    """L2QER's ``s`` from a linear's calibration inputs ``x`` (n, in): per-batch mean |x| per channel,
    running max over batches of ``batch_rows`` rows, normalised by ``sqrt(min s * max s)``."""
    s = torch.stack([c.abs().mean(0) for c in x.double().split(batch_rows)]).amax(0)
    s = s.clamp_min(1e-8)
    return s / torch.sqrt(s.min() * s.max())


def lqer_factors(w: Tensor, w_hat: Tensor, rank: int, s: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """(A (in, k), B (k, out), singular values of diag(s) E) for ``nn.Linear`` weights (out, in).

    ``s`` None = plain LQER (s = 1). Computed in fp64. Raises ValueError when ``rank`` exceeds the width.
    """
    e = (w.double() - w_hat.double()).T  # (in, out), the paper's layout
    if not 1 <= rank <= min(e.shape):
        raise ValueError(f"rank {rank} must be in [1, min(in, out) = {min(e.shape)}]")
    scale = torch.ones(e.shape[0], dtype=torch.float64) if s is None else s.double()
    u, sv, vh = torch.linalg.svd(scale[:, None] * e, full_matrices=False)
    a = u[:, :rank] / scale[:, None]
    b = sv[:rank, None] * vh[:rank]
    return a, b, sv


def top_share(sv: Tensor, k: int) -> float:
    """Share of the squared singular values in the top ``k`` (how much a rank-k adapter can capture)."""
    p = sv.double() ** 2
    return float(p[:k].sum() / p.sum().clamp_min(1e-300))


def quant_factors(a: Tensor, b: Tensor, bits: int) -> tuple[Tensor, Tensor, int]:
    """Fake-quantize the adapters symmetric per rank component (A) / per output channel (B) -> (A, B, bits)."""
    fmt = WeightQuant(bits=bits, group=None, symmetric=True)
    qa, qb = rtn(a.T.float(), fmt), rtn(b.T.float(), fmt)  # (k, in), (out, k): one scale per row
    return qa.dequant.T, qb.dequant.T, weight_bits(tuple(a.T.shape), fmt) + weight_bits(tuple(b.T.shape), fmt)
