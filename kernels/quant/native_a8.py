"""W4A8 / W8A8 CPU impl of ``quant_matmul``: activations rounded to int8 per row on the fly, integer
dot products against the weight codes (``csrc/quant_a8.c``, ctypes), fp32 out.

Numerics (not the reference's): each row of ``x`` is quantized symmetrically,
``sx = max|x_row| / 127``, ``xq = clamp(round(x_row * (127 / max|x_row|)), -127, 127)`` (round half
to even), and ``y = (sx * xq) @ dequantize(w).T`` -- :func:`quant_matmul_a8_reference` is the readable
definition. Because the activations are rounded, the impl is registered with ``exact=False``:
``"auto"`` and ``REPROLAB_KERNEL`` never select it; pass ``impl="native_a8"``.

Assumption: one activation scale per row (llama.cpp's Q8_0 uses one per 32 values, torch's dynamic
int8 Linear one per tensor); per row costs one pass over x and keeps the group loop free of
activation scales. The integer path is AVX2 ``vpmaddubsw`` + ``vpmaddwd`` on CPUs without VNNI and
``vpdpbusd`` where the compiler targets AVX-512 VNNI or AVX-VNNI (``qa8_isa()`` says which was
built); with none of these the impl reports itself unavailable.
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

__all__ = ["ISA_NAMES", "bind_native_a8", "isa", "quant_matmul_a8_reference", "quant_matmul_native_a8", "quantize_rows_int8"]

SOURCE = Path(__file__).with_name("csrc") / "quant_a8.c"
ISA_NAMES = {0: "none", 1: "avx2-maddubs", 2: "avx-vnni", 3: "avx512-vnni"}


@functools.cache
def _library() -> ctypes.CDLL | None:
    lib = build_library(SOURCE, "quant_a8")
    if lib is None:
        return None
    return declare(lib, qa8_isa=[], qa8_gemm_f32=DENSE_ARGS_I32_BITS)


def isa() -> str:
    """The integer-dot path the built library uses (``"none"`` when it cannot be built or has none)."""
    lib = _library()
    return ISA_NAMES.get(lib.qa8_isa(), "none") if lib is not None else "none"


def _available() -> bool:
    return isa() != "none"


def quantize_rows_int8(x: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric per-row int8 fake quantization: ``(xq, sx)`` with ``x ~= sx * xq``.

    ``xq`` holds integers in ``[-127, 127]`` (in ``x.dtype``, computed in fp32), ``sx`` is ``(..., 1)``.
    A row of zeros gets ``sx = 0``.
    """
    xf = x.float()
    amax = xf.abs().amax(-1, keepdim=True)  # (..., 1)
    inv = torch.where(amax > 0, 127.0 / amax, torch.zeros_like(amax))
    xq = torch.round(xf * inv).clamp(-127, 127)
    return xq, amax / 127.0


def quant_matmul_a8_reference(w: QuantWeight, x: Tensor) -> Tensor:
    """Readable definition of the W4A8/W8A8 product: fake-quantize the rows of ``x`` to int8, then
    ``x_hat @ dequantize(w).T`` in fp32 (cast back to ``x.dtype``)."""
    check_inputs(w, x)
    if isinstance(w, NMQuantWeight):
        raise TypeError("the int8-activation impl handles a dense QuantWeight only, got NMQuantWeight")
    xq, sx = quantize_rows_int8(x)
    return ((xq * sx) @ w.dequantize(torch.float32).T).to(x.dtype)  # (..., in) @ (in, out)


def quant_matmul_native_a8(w: QuantWeight, x: Tensor) -> Tensor:
    """``quant_matmul_a8_reference(w, x)`` with the C kernel (fp32, CPU; more than 64 rows of x run
    as 64-row chunks).

    Raises:
        TypeError: an N:M weight, or x not fp32 (after the shared checks).
        ValueError: a non-CPU tensor.
        RuntimeError: no integer-dot path in this build.
    """
    check_inputs(w, x)
    if isinstance(w, NMQuantWeight):
        raise TypeError("the int8-activation impl handles a dense QuantWeight only, got NMQuantWeight")
    out_features, in_features = w.shape
    lib = _library()
    rows = x.detach().reshape(-1, in_features)
    if rows.shape[0] > MAX_BATCH and x.dtype == torch.float32 and x.device.type == "cpu":
        # rows are quantized independently, so 64-row chunks compute exactly the same product
        # (lets a teacher-forced evaluation of a whole sequence batch run on this impl)
        y = torch.cat([quant_matmul_native_a8(w, part) for part in rows.split(MAX_BATCH)])
        return y.view(*x.shape[:-1], out_features)
    x2, lead, batch = native_rows(x, in_features, "quant a8", lib)
    if batch == 0:
        return torch.empty(*lead, out_features, dtype=torch.float32)
    status, y = dense_call(lib.qa8_gemm_f32, w, x2, batch)
    if status == 1:
        raise RuntimeError("the int8-activation kernel was built without an integer-dot path")
    if status:
        raise RuntimeError(f"native a8 kernel failed with status {status}")
    return y.view(*lead, out_features)


def bind_native_a8(w: QuantWeight):
    """A light call path for a fixed, already validated dense ``w`` (see :func:`kernels.quant.bind`)."""
    return _bind(w, _library(), "qa8_gemm_f32")


NATIVE_A8 = register_impl(Impl(
    name="native_a8",
    fn=quant_matmul_native_a8,
    available=_available,
    supports=lambda w, x: (isinstance(w, QuantWeight) and x.device.type == "cpu"
                           and x.dtype == torch.float32),
    priority=20,
    dtypes=(torch.float32,),
    exact=False,
))
BINDERS[NATIVE_A8.name] = bind_native_a8
