"""Exact fp32-activation low-bit matmul on AMX-BF16 (``csrc/quant_amx.c``, ctypes): ``impl="native_amx"``.

Same product as :mod:`kernels.quant.native` (``y = x @ dequantize(w).T`` in fp32, up to summation order),
computed with Intel AMX tile dot products: every code value ``u - z`` (int4: ``|.| <= 15``, int8: ``<= 255``)
is exactly a bf16, every fp32 activation is split exactly into three bf16 parts ``hi + mid + lo``, each
product of a code and a part is exact in fp32, and ``TDPBF16PS`` accumulates in fp32; the group scale is
applied per group with fp32 FMAs. So the impl is registered ``exact=True``. Details and the caveat on
activations below ~2e-31 (AMX flushes bf16 denormals) are in the C file and in docs/kernels.md.

Handles a dense :class:`QuantWeight` with bits 4 or 8 and ``group % 32 == 0`` or one group per row
(``group == in``, any width), fp32 CPU ``x`` with 1 to 64 rows. Other inputs raise (``TypeError`` for
N:M weights, ``ValueError`` for other groups); ``supports`` is false for them, so ``"auto"`` never sends
them here. Availability: the CPU flags ``amx_tile`` and ``amx_bf16`` in ``/proc/cpuinfo``, a build with the
AMX intrinsics (``-march=native``), and the kernel's ``arch_prctl(ARCH_REQ_XCOMP_PERM)`` granting tile
data to this process.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch
from torch import Tensor

from kernels.native_build import MAX_BATCH, build_library, native_rows
from kernels.quant.format import NMQuantWeight, QuantWeight
from kernels.quant.native import DENSE_ARGS_I32_BITS, _bind, declare, dense_call
from kernels.quant.registry import BINDERS, Impl, check_inputs, register_impl

__all__ = ["auto_min_batch", "bind_native_amx", "cpu_has_amx", "handles", "quant_matmul_native_amx"]

SOURCE = Path(__file__).with_name("csrc") / "quant_amx.c"


@functools.cache
def cpu_has_amx() -> bool:
    """True when ``/proc/cpuinfo`` lists ``amx_tile`` and ``amx_bf16`` (Linux; False elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return {"amx_tile", "amx_bf16"} <= flags
    return False


@functools.cache
def _library() -> ctypes.CDLL | None:
    if not cpu_has_amx():
        return None
    lib = build_library(SOURCE, "quant_amx")
    if lib is None:
        return None
    declare(lib, qamx_init=[], qamx_gemm_f32=DENSE_ARGS_I32_BITS)
    if lib.qamx_init() != 0:  # not built with AMX, or the OS refused tile data to this process
        return None
    return lib


def _available() -> bool:
    return _library() is not None


def handles(w) -> bool:
    """The formats the kernel computes: dense, bits 4 or 8, ``group % 32 == 0`` or one group per row."""
    return (isinstance(w, QuantWeight) and w.bits in (4, 8)
            and (w.group % 32 == 0 or w.group == w.shape[1]))


def _check_format(w) -> None:
    if isinstance(w, NMQuantWeight):
        raise TypeError("the AMX impl handles a dense QuantWeight only, got NMQuantWeight")
    if not handles(w):
        raise ValueError(f"the AMX impl needs group % 32 == 0 or one group per row, got group={w.group} "
                         f"for in_features={w.shape[1]}")


def quant_matmul_native_amx(w: QuantWeight, x: Tensor) -> Tensor:
    """``y = x @ dequantize(w).T`` with the AMX kernel (fp32, CPU, at most 64 rows of x).

    Raises:
        TypeError: an N:M weight, or x not fp32 (after the shared checks).
        ValueError: a group the kernel does not handle, more than 64 rows, or a non-CPU tensor.
        RuntimeError: no AMX here (library not built / permission refused).
    """
    check_inputs(w, x)
    _check_format(w)
    out_features, in_features = w.shape
    lib = _library()
    if lib is None and x.dtype == torch.float32 and x.device.type == "cpu":
        raise RuntimeError("the AMX kernel is not available here (no amx_bf16/amx_tile, or permission refused)")
    x2, lead, batch = native_rows(x, in_features, "quant amx", lib)
    if batch == 0:
        return torch.empty(*lead, out_features, dtype=torch.float32)
    status, y = dense_call(lib.qamx_gemm_f32, w, x2, batch)
    if status:
        raise RuntimeError(f"native AMX kernel failed with status {status}")
    return y.view(*lead, out_features)


def bind_native_amx(w: QuantWeight):
    """A light call path for a fixed, already validated dense ``w`` (see :func:`kernels.quant.bind_matmul`)."""
    _check_format(w)
    return _bind(w, _library(), "qamx_gemm_f32")


def auto_min_batch(w: QuantWeight) -> int:
    """Rows of x from which ``"auto"`` prefers this impl to ``native`` (measured, 4096x11008, cold, 1 thread,
    docs/kernels.md "AMX-BF16, exact"): 2 for every handled format (int4 g32 1.46x native at 2 rows, 1.57x
    at 4, 1.8x at 16; int8 per-channel 1.3x at 2, 1.45x at 3; int4 g128 1.46x at 2). At 1 row ``native``'s fused
    batch-1 path is about 1.7-2x faster, so it keeps batch 1. (``w`` is the hook for a per-format rule.)"""
    del w
    return 2


def _supports(w, x: Tensor) -> bool:
    if x.device.type != "cpu" or x.dtype != torch.float32 or not handles(w) or not _available():
        return False  # _available: AMX flags, an AMX build and the OS's tile-data permission (cached)
    rows = x.numel() // max(1, w.shape[1])
    return auto_min_batch(w) <= rows <= MAX_BATCH


NATIVE_AMX = register_impl(Impl(
    name="native_amx",
    fn=quant_matmul_native_amx,
    available=_available,
    supports=_supports,
    priority=16,  # above native (15) where it supports the input
    dtypes=(torch.float32,),
))
BINDERS[NATIVE_AMX.name] = bind_native_amx
