"""Reference N:M matmul: decompress, then a dense matmul. The ground truth; never optimised.

Computes ``y = x @ W.T`` (nn.Linear), i.e. NM-SpMM's ``C = A @ B`` (arXiv 2503.01253, Eq. 1) with
``A = x`` and ``B = W.T``; see :mod:`kernels.nm.registry` for the notation mapping.
"""

from __future__ import annotations

from torch import Tensor

from kernels.nm.format import NMWeight
from kernels.nm.registry import Impl, check_inputs, register_impl

__all__ = ["nm_matmul_reference"]


def nm_matmul_reference(w: NMWeight, x: Tensor) -> Tensor:
    """Readable ground truth: ``x @ to_dense(w).T``.

    Args:
        w: compressed ``(out, in)`` weight (values ``(out, K')``, K' = in * n / m).
        x: ``(..., in)``.

    Returns:
        ``(..., out)``.
    """
    check_inputs(w, x)
    # read values (out*K' elts) + packed indices; write the dense weight (out*in elts)
    dense = w.to_dense()  # (out, in)
    # read x (B*in) + the dense weight (out*in); write y (B*out), B = prod(x.shape[:-1])
    return x @ dense.T  # (..., in) @ (in, out) -> (..., out)


REFERENCE = register_impl(
    Impl(
        name="reference",
        fn=nm_matmul_reference,
        available=lambda: True,
        supports=lambda w, x: True,
        priority=0,
    )
)
