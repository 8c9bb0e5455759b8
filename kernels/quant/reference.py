"""Reference low-bit matmul: dequantize, then a dense matmul. The ground truth; never optimised."""

from __future__ import annotations

from torch import Tensor

from kernels.nm.reference import nm_matmul_reference
from kernels.quant.format import NMQuantWeight, QuantWeight
from kernels.quant.registry import Impl, check_inputs, register_impl

__all__ = ["quant_matmul_reference"]


def quant_matmul_reference(w: QuantWeight | NMQuantWeight, x: Tensor) -> Tensor:
    """Readable ground truth: ``x @ dequantize(w).T`` in ``x.dtype``.

    For N:M + quant the kept values are dequantized and the N:M reference (scatter to dense, then
    matmul) does the rest, so both formats share one definition of the product.
    """
    check_inputs(w, x)
    if isinstance(w, NMQuantWeight):
        return nm_matmul_reference(w.to_nm(x.dtype), x)
    # read codes + scales (+ zeros); write the dense (out, in) weight in x's dtype
    dense = w.dequantize(x.dtype)
    return x @ dense.T  # (..., in) @ (in, out) -> (..., out)


REFERENCE = register_impl(Impl(name="reference", fn=quant_matmul_reference, available=lambda: True,
                               supports=lambda w, x: True, priority=0))
