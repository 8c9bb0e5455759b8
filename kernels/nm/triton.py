"""Triton N:M kernel: gather the kept K rows of X for a tile sharing one pattern, ``tl.dot`` over K'.

Design (NM-SpMM, arXiv 2503.01253, Sec. IV, adapted to Triton; see docs/kernels.md):

* Program ``(pid_m, pid_n)`` owns ``BLOCK_M`` tokens x ``BLOCK_N`` output rows.
* ``SHARED`` path (``v % BLOCK_N == 0``): all ``BLOCK_N`` rows lie in one vector block, so they keep the
  same input columns. Per compacted K' step the program loads ``BLOCK_K`` in-group offsets (uint8),
  turns them into columns ``col = (k' // n) * m + offset``, gathers the ``(BLOCK_M, BLOCK_K)`` tile of
  X at those columns (X is passed K-major, so each gathered row is ``BLOCK_M`` contiguous elements),
  loads the ``(BLOCK_N, BLOCK_K)`` kept values contiguously and does ``acc += tl.dot(a, b.T)``.
  FLOPs and weight bytes drop by ``m / n``; for fp32 the dot uses ``input_precision="ieee"`` (no TF32,
  as in the paper's FP32 SIMT comparison); bf16/fp16 use tensor cores, accumulating in fp32.
* Per-row path (``v < BLOCK_N``, e.g. classic ``v = 1`` N:M): every row has its own columns, so the
  program gathers a ``(BLOCK_M, BLOCK_N, BLOCK_K)`` block of X and reduces with ``tl.sum`` (no
  tensor cores). Correct for every v; only worth it when memory-bound.

NOTE: ``TRITON_INTERPRET=1`` (the CPU interpreter, used by the tests) must be set before triton is
first imported: triton jits its own ``tl.sum`` & co. at import time. A late setting is detected and
raises a clear error instead of the interpreter's "outside of the scope of a kernel".
"""

import os

import torch
from torch import Tensor

from kernels.nm.format import NMWeight
from kernels.nm.registry import Impl, check_inputs, register_impl

__all__ = ["nm_matmul_triton"]

try:  # PLATFORM: triton is in the lock file, but keep the registry importable without it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover
    triton = None
    tl = None


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _available() -> bool:
    return triton is not None and (torch.cuda.is_available() or _interpret())


if triton is None:  # pragma: no cover
    class tl:  # noqa: N801  (annotation placeholder so the module still imports)
        constexpr = object


def _nm_kernel(
    x_ptr, val_ptr, off_ptr, y_ptr,
    B, O, KP,
    stride_xm, stride_xk, stride_vo, stride_ym, stride_yo,
    N: tl.constexpr, M: tl.constexpr, V: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    SHARED: tl.constexpr, IEEE: tl.constexpr, UPCAST: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # token rows of X / Y
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # output rows of W / columns of Y
    m_ok = rm < B
    n_ok = rn < O
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, KP, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)  # compacted K' positions
        k_ok = rk < KP
        if SHARED:
            blk = (pid_n * BLOCK_N) // V  # the one vector block of this tile
            off = tl.load(off_ptr + blk * KP + rk, mask=k_ok, other=0).to(tl.int32)  # (BK,)
            col = (rk // N) * M + off  # (BK,) absolute input columns
            a = tl.load(
                x_ptr + rm[:, None] * stride_xm + col[None, :] * stride_xk,
                mask=m_ok[:, None] & k_ok[None, :], other=0.0,
            )  # (BM, BK) gathered X
            b = tl.load(
                val_ptr + rn[:, None] * stride_vo + rk[None, :],
                mask=n_ok[:, None] & k_ok[None, :], other=0.0,
            )  # (BN, BK) kept values
            if UPCAST:  # interpreter only: its bf16 tl.dot is wrong, so emulate it in fp32
                acc += tl.dot(a.to(tl.float32), tl.trans(b.to(tl.float32)), input_precision="ieee")
            elif IEEE:
                acc += tl.dot(a, tl.trans(b), input_precision="ieee")
            else:
                acc += tl.dot(a, tl.trans(b))
        else:
            nk_ok = n_ok[:, None] & k_ok[None, :]
            blk = rn // V  # (BN,) vector block per row
            off = tl.load(off_ptr + blk[:, None] * KP + rk[None, :], mask=nk_ok, other=0).to(tl.int32)
            col = (rk[None, :] // N) * M + off  # (BN, BK)
            b = tl.load(val_ptr + rn[:, None] * stride_vo + rk[None, :], mask=nk_ok, other=0.0)
            a = tl.load(
                x_ptr + rm[:, None, None] * stride_xm + col[None, :, :] * stride_xk,
                mask=m_ok[:, None, None] & nk_ok[None, :, :], other=0.0,
            )  # (BM, BN, BK)
            acc += tl.sum(a.to(tl.float32) * b[None, :, :].to(tl.float32), axis=2)
    y = acc.to(y_ptr.dtype.element_ty)
    tl.store(y_ptr + rm[:, None] * stride_ym + rn[None, :] * stride_yo, y,
             mask=m_ok[:, None] & n_ok[None, :])


_KERNELS: dict = {}


def _kernel():
    """The jitted kernel for the current interpreter setting (built on first use)."""
    mode = _interpret()
    if mode and not type(tl.sum).__name__ == "InterpretedFunction":
        raise RuntimeError(
            "TRITON_INTERPRET=1 was set after triton was imported; set it before importing triton"
        )
    if mode not in _KERNELS:
        _KERNELS[mode] = triton.jit(_nm_kernel)
    return _KERNELS[mode]



def _tiles(v: int, batch: int) -> tuple[int, int, int]:
    """Default ``(BLOCK_M, BLOCK_N, BLOCK_K)``.

    Assumption: untuned defaults (no GPU was available to autotune them). A tile of output rows is
    as wide as the shared-pattern block allows (64, 32 or 16 rows) so the ``tl.dot`` path is taken;
    otherwise (``v`` not a multiple of 16, e.g. ``v = 1``) small 16^3 tiles keep the per-row
    gather's ``(BLOCK_M, BLOCK_N, BLOCK_K)`` block in registers.
    """
    block_m = 16 if batch <= 16 else 64
    for block_n in (64, 32, 16):
        if v % block_n == 0:
            return block_m, block_n, 64
    return 16, 16, 16


def nm_matmul_triton(w: NMWeight, x: Tensor, block_m: int | None = None,
                     block_n: int | None = None, block_k: int | None = None) -> Tensor:
    """``y = x @ W.T`` with the Triton kernel (GPU, or CPU under ``TRITON_INTERPRET=1``).

    Args:
        w: compressed ``(out, in)`` weight.
        x: ``(..., in)``; fp32, fp16 or bf16.
        block_m, block_n, block_k: tile sizes (powers of two, >= 16 for ``tl.dot``); None takes
            :func:`_tiles`. ``block_n`` dividing ``v`` selects the shared-pattern ``tl.dot`` path.

    Returns:
        ``(..., out)`` in ``x.dtype`` (accumulated in fp32).
    """
    check_inputs(w, x)
    if not _available():
        raise RuntimeError("the triton N:M impl needs CUDA or TRITON_INTERPRET=1")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"triton N:M impl supports fp32/fp16/bf16, got {x.dtype}")
    out_features, in_features = w.shape
    lead = x.shape[:-1]
    x2 = x.reshape(-1, in_features)
    batch = x2.shape[0]
    # NOTE: K-major X (in, B): a gathered row of the tile is BLOCK_M contiguous tokens (coalesced).
    xt = x2.T.contiguous()
    # NOTE: triton 3.9's interpreter casts fp32 -> bf16 by truncation (its RTNE path drops the
    # mantissa carry), so under the interpreter bf16 results are stored in fp32 and rounded by torch.
    upcast = _interpret() and x.dtype == torch.bfloat16
    y = torch.empty(batch, out_features, device=x.device,
                    dtype=torch.float32 if upcast else x.dtype)
    if batch == 0:
        return y.to(x.dtype).view(*lead, out_features)
    values = w.values.contiguous()
    dm, dn, dk = _tiles(w.v, batch)
    block_m, block_n, block_k = block_m or dm, block_n or dn, block_k or dk
    shared = w.v % block_n == 0
    grid = (triton.cdiv(batch, block_m), triton.cdiv(out_features, block_n))
    _kernel()[grid](
        xt, values, w.offsets_u8(), y,
        batch, out_features, w.kept,
        xt.stride(1), xt.stride(0), values.stride(0), y.stride(0), y.stride(1),
        N=w.n, M=w.m, V=w.v,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
        SHARED=shared, IEEE=x.dtype == torch.float32,
        # NOTE: triton 3.9's CPU interpreter returns garbage for a bf16 tl.dot (checked on a bare
        # 16x16 dot); exact fp32 products of bf16 inputs are what the GPU's bf16 MMA computes too.
        UPCAST=upcast,
    )
    return y.to(x.dtype).view(*lead, out_features)


TRITON = register_impl(
    Impl(
        name="triton",
        fn=nm_matmul_triton,
        available=_available,
        # auto never picks the (slow) CPU interpreter; explicit impl="triton" still runs it
        supports=lambda w, x: x.is_cuda and x.dtype in (torch.float32, torch.float16, torch.bfloat16),
        priority=20,
        dtypes=(torch.float32, torch.float16, torch.bfloat16),
    )
)
