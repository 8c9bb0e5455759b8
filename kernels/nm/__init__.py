"""N:M sparse weights and matmul: ``nm_matmul(w, x, impl="auto")`` (NM-SpMM, arXiv 2503.01253).

Modules: :mod:`~kernels.nm.format` (masks + compressed format), :mod:`~kernels.nm.registry`
(dispatch), :mod:`~kernels.nm.reference` (ground truth) and the fast impls, each registered on import.
"""

from kernels.nm import cpu, native, reference, semi_structured, triton  # noqa: F401  (register impls)
from kernels.nm.format import (
    NMWeight,
    index_bits,
    magnitude_mask,
    pack_indices,
    pattern_indices,
    unpack_indices,
    validate_nm,
)
from kernels.nm.reference import nm_matmul_reference
from kernels.nm.registry import Impl, check_impl_name, check_inputs, get_impl, impls, nm_matmul, register_impl, select_impl

__all__ = [
    "Impl",
    "NMWeight",
    "check_impl_name",
    "check_inputs",
    "get_impl",
    "impls",
    "index_bits",
    "magnitude_mask",
    "nm_matmul",
    "nm_matmul_reference",
    "pack_indices",
    "pattern_indices",
    "register_impl",
    "select_impl",
    "unpack_indices",
    "validate_nm",
]
