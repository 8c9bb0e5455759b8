"""Native CPU impl of ``quant_matmul``: a C kernel (``csrc/quant_cpu.c``) called through ctypes.

Why a C kernel: at batch 1-64 a weight-only low-bit matmul is worth doing only if the codes are
unpacked in registers on their way to the FMAs; any torch composition materialises the fp32 weight
(4 B per weight written and read again), which is exactly the traffic quantization is meant to save.
The kernel reads each code once per call (4 or 8 bits + the group's scale), dequantizes 4 rows x 1024
codes at a time into an L1 buffer with 16-wide vector unpacking, and runs a 4-row x 4-batch register
tile of FMAs over it. N:M + quant gathers the kept columns of x per vector block first (1:2 / 2:4
with v = 1 decode the 2-bit packed indices in registers), then runs the same dense routine; with
v = 1 and batch > 1 it dequantizes each row once and does one 16-wide FMA per kept value against a
K-major x instead (a per-row gather of the whole batch would cost more than the FMAs).

Built on first use by :func:`kernels.native_build.build_library` (same compiler, flags and cache as
the N:M kernel). ``available()`` is false when the build fails; the registry then never selects it.
fp32 activations only, batch <= 64.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch
from torch import Tensor

from kernels.native_build import (
    MAX_BATCH,
    build_library,
    has_avx512,
    kmajor,
    native_rows,
    team_size,
)
from kernels.quant.format import NMQuantWeight, QuantWeight
from kernels.quant.registry import BINDERS, Impl, check_inputs, register_impl

__all__ = ["bind_native", "quant_matmul_native"]

SOURCE = Path(__file__).with_name("csrc") / "quant_cpu.c"


_P, _I64, _I32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
# (x, codes, scales, scale_f16, zeros, y, out, in, bits, group, batch, threads) of qa8_gemm_f32 / qamx_gemm_f32
DENSE_ARGS_I32_BITS = [_P, _P, _P, _I32, _P, _P, _I64, _I64, _I32, _I64, _I64, _I32]


def declare(lib: ctypes.CDLL, **symbols: list) -> ctypes.CDLL:
    """Set ``argtypes`` of each named C entry point (all return an int status)."""
    for name, argtypes in symbols.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = ctypes.c_int, argtypes
    return lib


@functools.cache
def _library() -> ctypes.CDLL | None:
    lib = build_library(SOURCE, "quant_cpu")
    if lib is None:
        return None
    p, i64, i32 = _P, _I64, _I32
    return declare(lib, quant_gemm_f32=[p, p, p, i32, p, p] + [i64] * 5 + [i32],
                   nmq_gemm_f32=[p, p, p, i32, p, p, p, p] + [i64] * 8 + [i32],
                   nmq_rows_kmajor_f32=[p, p, p, i32, p, p, p] + [i64] * 8 + [i32])


def _available() -> bool:
    return _library() is not None


def _half_packed(w: NMQuantWeight) -> bool:
    """1:2 or 2:4 (any v) with byte-aligned blocks of 1- or 2-bit indices, on an AVX-512 build: the kernel
    gathers x from the packed indices in registers. (Before, v > 1 took the uint8 offsets and a scalar gather,
    removing it took a 2:4 v = 32 int4 g32 4096x11008 call from 3.54 to 3.05 ms at batch 1 and from 23.2 to 11.7 ms
    at batch 16, cold, on an AVX-512 Xeon.)"""
    bits = 1 if w.m == 2 else 2
    return has_avx512() and (w.n, w.m) in ((1, 2), (2, 4)) and (w.kept * bits) % 8 == 0


def quant_matmul_native(w: QuantWeight | NMQuantWeight, x: Tensor) -> Tensor:
    """``y = x @ dequantize(w).T`` with the C kernel (fp32, CPU, at most 64 rows of x).

    Raises:
        TypeError: x not fp32 (after the shared checks).
        ValueError: more than 64 rows of x, or a non-CPU tensor.
    """
    check_inputs(w, x)
    out_features, in_features = w.shape
    lib = _library()
    x2, lead, batch = native_rows(x, in_features, "quant", lib)
    q = w.q if isinstance(w, NMQuantWeight) else w
    y = torch.empty(batch, out_features, dtype=torch.float32)  # (B, out)
    if batch == 0:
        return y.view(*lead, out_features)
    threads = team_size(q.shape[0] * q.shape[1] * batch)
    scale_f16 = int(q.scales.dtype == torch.float16)
    zeros = None if q.zeros is None else q.zeros.data_ptr()
    if isinstance(w, QuantWeight):
        status, y = dense_call(lib.quant_gemm_f32, w, x2, batch)
    elif w.v == 1 and batch > 1:
        # K-major x, batch padded to a multiple of 16: one 16-wide FMA per kept value and chunk
        xt, padded = kmajor(x2)  # (in, Bp)
        off = w.pattern().offsets_u8()  # (out, K') uint8, cached
        status = lib.nmq_rows_kmajor_f32(xt.data_ptr(), q.codes.data_ptr(), q.scales.data_ptr(),
                                         scale_f16, zeros, off.data_ptr(), y.data_ptr(), out_features,
                                         in_features, w.n, w.m, q.bits, q.group, padded, batch, threads)
    else:
        packed = _half_packed(w)
        off = None if packed else w.pattern().offsets_u8().data_ptr()  # (n_vec, K') uint8, cached
        status = lib.nmq_gemm_f32(x2.data_ptr(), q.codes.data_ptr(), q.scales.data_ptr(), scale_f16,
                                  zeros, off, w.indices.data_ptr(), y.data_ptr(), out_features,
                                  in_features, w.n, w.m, w.v, q.bits, q.group, batch, threads)
    if status:
        raise RuntimeError(f"native quant kernel failed with status {status}")
    return y.view(*lead, out_features)


def dense_call(fn, w: QuantWeight, x2: Tensor, batch: int) -> tuple[int, Tensor]:
    """``(status, y)``: one dense weight-only C entry point of the shared signature ``(x, codes, scales, scale_f16,
    zeros, y, out, in, bits, group, batch, threads)`` (``quant_gemm_f32``, ``qa8_gemm_f32``, ``qamx_gemm_f32``) on a
    contiguous fp32 ``(batch, in)`` ``x2``; ``y`` is ``(batch, out)``."""
    out_features, in_features = w.shape
    y = torch.empty(batch, out_features, dtype=torch.float32)  # (B, out)
    zeros = None if w.zeros is None else w.zeros.data_ptr()
    status = fn(x2.data_ptr(), w.codes.data_ptr(), w.scales.data_ptr(), int(w.scales.dtype == torch.float16), zeros,
                y.data_ptr(), out_features, in_features, w.bits, w.group, batch,
                team_size(out_features * in_features * batch))
    return status, y


def bind_native(w: QuantWeight):
    """A light call path for a fixed, already validated dense ``w`` (see :func:`kernels.quant.bind`)."""
    return _bind(w, _library(), "quant_gemm_f32")


def _bind(w: QuantWeight, lib, symbol: str):
    """``call(x2) -> y``: the C kernel on a contiguous fp32 CPU ``(B, in)`` with ``1 <= B <= 64``, the
    weight's pointers, shape and format bound once. The caller guarantees those conditions."""
    fn = getattr(lib, symbol)
    out_features, in_features = w.shape
    args = (w.codes.data_ptr(), w.scales.data_ptr(), int(w.scales.dtype == torch.float16),
            None if w.zeros is None else w.zeros.data_ptr())
    work = out_features * in_features

    def call(x2: Tensor, _keep=w) -> Tensor:  # _keep: the weight's tensors outlive the closure
        batch = x2.shape[0]
        y = torch.empty(batch, out_features, dtype=torch.float32)  # (B, out)
        status = fn(x2.data_ptr(), *args[:2], args[2], args[3], y.data_ptr(), out_features, in_features,
                    w.bits, w.group, batch, team_size(work * batch))
        if status:
            raise RuntimeError(f"native kernel {symbol} failed with status {status}")
        return y
    return call


NATIVE = register_impl(Impl(
    name="native",
    fn=quant_matmul_native,
    available=_available,
    # auto only where the vector paths exist (AVX-512): elsewhere the C file's scalar fallback is correct but
    # measured 0.06-0.2x of fp32 dense on an AVX2-only EPYC, slower than the reference (dequantize + matmul);
    # impl="native" still runs it there (parity tests)
    supports=lambda w, x: (x.device.type == "cpu" and x.dtype == torch.float32 and has_avx512()
                           and x.numel() // max(1, w.shape[1]) <= MAX_BATCH),
    priority=15,
    dtypes=(torch.float32,),
))
BINDERS[NATIVE.name] = bind_native
