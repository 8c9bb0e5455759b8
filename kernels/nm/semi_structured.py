"""torch semi-structured 2:4 (cuSPARSELt / CUTLASS) as the GPU peer impl for ``n:m = 2:4, v = 1``.

``torch.sparse.to_sparse_semi_structured`` compresses a dense 2:4 weight into the sparse tensor core
layout; ``F.linear(x, w_sparse)`` then runs a 2:4 sparse GEMM. Only fp16/bf16 (2:4) on CUDA with
compute capability >= 8.0 are registered here; fp32 on that hardware would be 1:2 (cuSPARSELt), which
this impl does not cover. Not available on CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kernels.nm.format import NMWeight
from kernels.nm.registry import Impl, check_inputs, register_impl

__all__ = ["nm_matmul_semi_structured"]

_DTYPES = (torch.float16, torch.bfloat16)


def _available() -> bool:
    if not torch.cuda.is_available() or not hasattr(torch.sparse, "to_sparse_semi_structured"):
        return False
    return torch.cuda.get_device_capability() >= (8, 0)


def _supports(w: NMWeight, x: Tensor) -> bool:
    # NOTE: CUTLASS needs rows % 32 == 0 and cols % 64 == 0 for fp16/bf16 (torch's min shapes).
    return (
        x.is_cuda and (w.n, w.m, w.v) == (2, 4, 1) and x.dtype in _DTYPES
        and w.shape[0] % 32 == 0 and w.shape[1] % 64 == 0
    )


def nm_matmul_semi_structured(w: NMWeight, x: Tensor) -> Tensor:
    """``y = x @ W.T`` via torch's 2:4 semi-structured sparse GEMM.

    Raises:
        ValueError: if ``w`` is not 2:4 with ``v = 1`` or its shape is below the CUTLASS minimum.
        TypeError: for dtypes other than fp16/bf16.
    """
    check_inputs(w, x)
    if (w.n, w.m, w.v) != (2, 4, 1):
        raise ValueError(f"semi_structured needs n:m = 2:4 with v = 1, got {w.n}:{w.m}, v={w.v}")
    if x.dtype not in _DTYPES:
        raise TypeError(f"semi_structured supports fp16/bf16, got {x.dtype}")
    if not _supports(w, x):
        raise ValueError(f"semi_structured needs CUDA and shape multiples of (32, 64), got {w.shape}")
    # the sparse weight depends on the values, so cache it per values version
    key = ("semi_structured", w.values.data_ptr(), w.values._version)
    if key not in w._cache:
        for old in [k for k in w._cache if k[0] == "semi_structured"]:
            del w._cache[old]
        w._cache[key] = torch.sparse.to_sparse_semi_structured(w.to_dense().detach())
    lead = x.shape[:-1]
    y = F.linear(x.reshape(-1, w.shape[1]), w._cache[key])  # (B, in) -> (B, out)
    return y.view(*lead, w.shape[0])


SEMI_STRUCTURED = register_impl(
    Impl(
        name="semi_structured",
        fn=nm_matmul_semi_structured,
        available=_available,
        supports=_supports,
        priority=30,
        dtypes=_DTYPES,
    )
)
