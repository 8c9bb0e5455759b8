"""CPU fast path: gather the kept input columns per vector block, then a dense batched GEMM.

Vector-wise N:M (NM-SpMM, arXiv 2503.01253, Sec. III-A): the ``v`` output rows of block ``j`` share
the kept input columns ``cols[j]`` (``K' = in * n / m`` of them), so

    y[:, j*v:(j+1)*v] = x[:, cols[j]] @ values[j*v:(j+1)*v].T        # (B, K') @ (K', v)

which is one dense GEMM over the compacted K' per block: the FLOPs drop by ``m / n`` and the weight
bytes by about the same, at the cost of gathering ``B * K'`` activations per block. Blocks are
processed in chunks sized so the gathered activations stay in L2 (``CHUNK_BYTES``).

NOTE: the gather reads rows of ``x.T`` (K-major, ``(in, B)``), so each gathered row is ``B``
contiguous elements; gathering columns of a row-major ``x`` was slower in our measurements.
With ``v = 1`` every block is a single row and the per-block GEMM degenerates to a GEMV; that path
is correct but slow, so ``"auto"`` does not pick this impl for ``v < MIN_AUTO_V``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kernels.nm.format import NMWeight
from kernels.nm.registry import Impl, check_inputs, register_impl

__all__ = ["nm_matmul_cpu"]

CHUNK_BYTES = 1 << 20  # gathered activations per chunk; fits the 2 MiB/core L2 of our test box
MIN_AUTO_V = 8  # below this, per-block GEMMs are too small to beat a dense GEMM


def nm_matmul_cpu(w: NMWeight, x: Tensor) -> Tensor:
    """``y = x @ W.T`` by gather + batched GEMM over compacted K (see module docstring).

    Args:
        w: compressed ``(out, in)`` weight, values ``(out, K')``.
        x: ``(..., in)``.

    Returns:
        ``(..., out)``.
    """
    check_inputs(w, x)
    out_features, in_features = w.shape
    lead = x.shape[:-1]
    x2 = x.reshape(-1, in_features)  # (B, in)
    batch = x2.shape[0]
    kept, v = w.kept, w.v
    n_full = out_features // v  # complete vector blocks
    cols = w.columns()  # (n_vec, K') int64 absolute input columns
    xt = x2.T.contiguous()  # (in, B): gathered rows are B contiguous elements
    y = x.new_empty(batch, out_features)
    if n_full:
        vals = w.values[: n_full * v].view(n_full, v, kept)  # (n_full, v, K')
        flat = cols[:n_full].reshape(-1)  # (n_full * K',)
        per_block = kept * batch * x.element_size()
        chunk = max(1, min(n_full, CHUNK_BYTES // per_block))
        buf = x.new_empty(chunk * kept, batch)  # gathered x rows, (chunk*K', B)
        small_batch = batch < 8
        out = x.new_empty(n_full, batch, v) if small_batch else x.new_empty(n_full, v, batch)
        for s in range(0, n_full, chunk):
            e = min(n_full, s + chunk)
            g = buf[: (e - s) * kept]
            # read (e-s)*K' indices (8 B) + (e-s)*K'*B activations; write the same into buf (L2)
            torch.index_select(xt, 0, flat[s * kept : e * kept], out=g)
            g = g.view(e - s, kept, batch)  # (c, K', B)
            # read (e-s)*v*K' values: the only O(weight) traffic of the whole call
            if small_batch:  # (c, B, K') @ (c, K', v) -> (c, B, v): B rows per GEMM
                torch.bmm(g.transpose(1, 2), vals[s:e].transpose(1, 2), out=out[s:e])
            else:  # (c, v, K') @ (c, K', B) -> (c, v, B)
                torch.bmm(vals[s:e], g, out=out[s:e])
        if small_batch:
            y[:, : n_full * v] = out.transpose(0, 1).reshape(batch, n_full * v)
        else:
            y[:, : n_full * v] = out.view(n_full * v, batch).T
    if n_full * v < out_features:  # partial last block: rows n_full*v .. out-1
        g = xt.index_select(0, cols[n_full])  # (K', B)
        y[:, n_full * v :] = (w.values[n_full * v :] @ g).T  # (r, K') @ (K', B) -> (B, r)
    return y.view(*lead, out_features)


CPU = register_impl(
    Impl(
        name="cpu",
        fn=nm_matmul_cpu,
        available=lambda: True,
        supports=lambda w, x: x.device.type == "cpu" and w.v >= MIN_AUTO_V,
        priority=10,
    )
)
