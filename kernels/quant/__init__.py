"""Weight-only low-bit (int8 / int4) and N:M + low-bit matmul: ``quant_matmul(w, x, impl="auto")``.

Modules: :mod:`~kernels.quant.format` (``QuantWeight``, ``NMQuantWeight``), :mod:`~kernels.quant.registry`
(dispatch), :mod:`~kernels.quant.reference` (dequantize then matmul) and :mod:`~kernels.quant.native`
(C kernel), each registered on import. See docs/kernels.md.
"""

from kernels.quant import native, native_a8, native_amx, reference  # noqa: F401  (register impls)
from kernels.quant.format import (
    BITS,
    NMQuantWeight,
    QuantWeight,
    expected_nbytes,
    pack_codes,
    unpack_codes,
    validate_quant,
)
from kernels.quant.reference import quant_matmul_reference
from kernels.quant.registry import bind_matmul, check_impl_name, check_inputs, get_impl, impls, quant_matmul, register_impl, select_impl

__all__ = [
    "BITS",
    "NMQuantWeight",
    "QuantWeight",
    "bind_matmul",
    "check_impl_name",
    "check_inputs",
    "expected_nbytes",
    "get_impl",
    "impls",
    "pack_codes",
    "quant_matmul",
    "quant_matmul_reference",
    "register_impl",
    "select_impl",
    "unpack_codes",
    "validate_quant",
]
