"""Native CPU impl for small batches: a C kernel (``csrc/nm_cpu.c``) called through ctypes.

Why: the torch gather+bmm path (:mod:`kernels.nm.cpu`) turns each vector block into a small GEMM; at
batch 1-16 those GEMMs are GEMVs and torch's batched GEMV streams the values slower than MKL's dense
GEMV streams the dense weight, and for ``v = 1`` the per-row gather has no torch primitive at all.
The C kernel streams values once (4 B each + 1 B offset / v). For v >= 2 it gathers x into an L1/L2
buffer per block and computes a 4-row x 4-batch register tile of dot products; for v = 1 it fuses
the gather into each row (batch 1) or does one 16-wide FMA per kept value against K-major x.

Built on first use with the system C compiler (``cc -O3 -march=native -fopenmp``) into
``$REPROLAB_CACHE`` (default ``~/.cache/reprolab``), keyed by a hash of the source and flags; the
build is atomic (temp file + rename). ``available()`` is false when no compiler is found or the build
fails, and the registry then simply never selects it. fp32 only, batch <= 64.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch
from torch import Tensor

from kernels.nm.cpu import MIN_AUTO_V
from kernels.nm.format import NMWeight, index_bits
from kernels.native_build import MAX_BATCH, build_library, has_avx512, kmajor, native_rows, team_size
from kernels.nm.registry import Impl, check_inputs, register_impl

__all__ = ["nm_matmul_native"]

SOURCE = Path(__file__).with_name("csrc") / "nm_cpu.c"
AUTO_MAX_BATCH = 16  # with v >= 8, above this the BLAS-backed torch path (`cpu`) takes over


@functools.cache
def _library() -> ctypes.CDLL | None:
    """Compile (once per source/flags hash, see :mod:`kernels.native_build`) and load the kernel."""
    lib = build_library(SOURCE, "nm_cpu")
    if lib is None:
        return None
    lib.nm_spmm_f32.restype = ctypes.c_int
    lib.nm_spmm_f32.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 6 + [ctypes.c_int]
    lib.nm_spmm_rows_kmajor_f32.restype = ctypes.c_int
    lib.nm_spmm_half_packed_f32.restype = ctypes.c_int
    lib.nm_spmm_half_packed_f32.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 4 + [ctypes.c_int]
    lib.has_avx512 = has_avx512()
    lib.nm_spmm_rows_kmajor_f32.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 6 + [ctypes.c_int]
    return lib


def _available() -> bool:
    return _library() is not None



def _packed_path(w: NMWeight, lib) -> bool:
    """1:2 or 2:4 with v = 1 and byte-aligned rows of packed indices, on an AVX-512 build."""
    bits = index_bits(w.m)
    return (lib.has_avx512 and w.v == 1 and (w.n, w.m) in ((1, 2), (2, 4))
            and (w.kept * bits) % 8 == 0)


def nm_matmul_native(w: NMWeight, x: Tensor) -> Tensor:
    """``y = x @ W.T`` with the C kernel (fp32, CPU, at most 64 rows of x).

    Raises:
        TypeError: dtype other than fp32 (after the shared checks).
        ValueError: more than 64 rows of x, or a non-CPU tensor.
    """
    check_inputs(w, x)
    out_features, in_features = w.shape
    lib = _library()
    x2, lead, batch = native_rows(x, in_features, "N:M", lib)
    values = w.values.detach().contiguous()  # (out, K')
    offsets = w.offsets_u8()  # (n_vec, K') uint8
    y = torch.empty(batch, out_features, dtype=x.dtype)  # (B, out)
    threads = team_size(out_features * w.kept * batch)
    status = 0
    if batch == 1 and _packed_path(w, lib):
        # 1:2 / 2:4 per-row: read the bit-packed storage indices directly (log2 m bits per value)
        status = lib.nm_spmm_half_packed_f32(
            x2.data_ptr(), values.data_ptr(), w.indices.data_ptr(), y.data_ptr(),
            out_features, in_features, w.n, w.m, threads)
    elif batch and w.v == 1 and batch > 1:
        # K-major x, batch padded to a multiple of 16: one 16-wide FMA per kept value and chunk
        xt, padded = kmajor(x2)  # (in, Bp)
        status = lib.nm_spmm_rows_kmajor_f32(
            xt.data_ptr(), values.data_ptr(), offsets.data_ptr(), y.data_ptr(),
            out_features, in_features, w.n, w.m, padded, batch, threads)
    elif batch:
        status = lib.nm_spmm_f32(x2.data_ptr(), values.data_ptr(), offsets.data_ptr(), y.data_ptr(),
                                 out_features, in_features, w.n, w.m, w.v, batch, threads)
    if status:
        raise RuntimeError(f"native N:M kernel failed with status {status}")
    return y.view(*lead, out_features)


NATIVE = register_impl(
    Impl(
        name="native",
        fn=nm_matmul_native,
        available=_available,
        supports=lambda w, x: (
            x.device.type == "cpu" and x.dtype == torch.float32
            and x.numel() // w.shape[1] <= (AUTO_MAX_BATCH if w.v >= MIN_AUTO_V else MAX_BATCH)
        ),
        priority=15,
        dtypes=(torch.float32,),
    )
)
