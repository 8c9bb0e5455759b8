"""One call for every low-bit matmul: ``quant_matmul(w, x, impl="auto")`` (as ``nm_matmul``).

``y = x @ W.T`` with ``W`` the dequantized weight (:meth:`QuantWeight.dequantize`, or the dense N:M
weight of an :class:`NMQuantWeight`), ``x: (..., in)``, ``y: (..., out)``. Inference only: when ``x``
requires grad the reference (plain torch, differentiable in ``x``) runs.

Selection follows :mod:`kernels.nm.registry` (and reuses its :class:`~kernels.nm.registry.Impl`):
``REPROLAB_KERNEL=reference`` forces the reference; ``REPROLAB_KERNEL=<name>`` replaces ``"auto"``
when ``<name>`` is a registered *quant* impl (N:M-only names such as ``cpu`` are ignored here);
``"auto"`` takes the highest-priority available impl whose ``supports(w, x)`` is true.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kernels.nm.registry import Impl, ImplRegistry
from kernels.quant.format import NMQuantWeight, QuantWeight

__all__ = ["bind_matmul", "check_impl_name", "check_inputs", "get_impl", "impls", "quant_matmul", "register_impl", "select_impl"]

_REGISTRY = ImplRegistry("quant")
register_impl = _REGISTRY.register
check_impl_name = _REGISTRY.check_name
impls = _REGISTRY.all
get_impl = _REGISTRY.get


def check_inputs(w: QuantWeight | NMQuantWeight, x: Tensor) -> None:
    """Shared validation: every impl raises the same error for the same bad input.

    Raises:
        TypeError: ``w`` not a QuantWeight/NMQuantWeight, or ``x`` not a floating tensor.
        ValueError: an invalid weight (bits not in {4, 8}, group not dividing the width, wrong
            code/scale shapes: :meth:`QuantWeight.validate`), ``x.shape[-1] != in``, a 0-d ``x``, or
            ``x`` on another device.
    """
    if not isinstance(w, (QuantWeight, NMQuantWeight)):
        raise TypeError(f"w must be a QuantWeight or NMQuantWeight, got {type(w).__name__}")
    w.validate()
    if not isinstance(x, Tensor) or not torch.is_floating_point(x):
        raise TypeError(f"x must be a floating-point tensor, got {getattr(x, 'dtype', type(x))}")
    if x.dim() < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"x has shape {tuple(x.shape)}; its last dim must equal in_features={w.shape[1]}")
    if x.device != w.device:
        raise ValueError(f"x is on {x.device} but the weight is on {w.device}")


def select_impl(w: QuantWeight | NMQuantWeight, x: Tensor, impl: str = "auto") -> Impl:
    """Resolve ``impl`` (and the env switch) to a registered, usable :class:`Impl` (:meth:`ImplRegistry.select`)."""
    return _REGISTRY.select(w, x, impl)


def quant_matmul(w: QuantWeight | NMQuantWeight, x: Tensor, impl: str = "auto") -> Tensor:
    """``y = x @ dequantize(w).T`` (see the module docstring).

    Args:
        w: quantized ``(out, in)`` weight, dense or N:M.
        x: ``(..., in)`` float activations on the weight's device.
        impl: ``"auto"`` or a registered impl name.

    Returns:
        ``(..., out)`` in ``x.dtype``.
    """
    check_inputs(w, x)
    if torch.is_grad_enabled() and x.requires_grad:
        return get_impl("reference").fn(w, x)
    return select_impl(w, x, impl).fn(w, x)


#: impl name -> ``bind(w) -> call(x2)``, registered by the native impls (a light per-call path)
BINDERS: dict = {}


def bind_matmul(w: QuantWeight | NMQuantWeight, x: Tensor, impl: str = "auto"):
    """``call(x) -> y`` equal to ``quant_matmul(w, x', impl)`` for later ``x'`` like ``x``, or None.

    For a layer that multiplies the same weight many times by small inputs (a decode step), the
    checks of :func:`quant_matmul` (weight validation, impl selection, x checks, ctypes argument
    building: ~200 us of Python per call under load, measured) cost more than the kernel. This runs
    them once, on ``(w, x)``, and returns a closure that only checks what can change per call
    (dtype, device, width, row count, grad) and otherwise calls the bound C kernel. It returns None
    (use :func:`quant_matmul`) when the selected impl has no binder (the reference, N:M weights).
    The closure falls back to :func:`quant_matmul` for any ``x'`` outside the bound fast case, so its
    result always equals ``quant_matmul(w, x', impl)``. The weight must not be mutated afterwards
    (``QuantLinear`` rebinds when a buffer is replaced). ``REPROLAB_KERNEL`` is read at bind time.
    """
    check_inputs(w, x)
    if not isinstance(w, QuantWeight):
        return None
    chosen = select_impl(w, x, impl)
    if BINDERS.get(chosen.name) is None:
        return None
    in_features = w.shape[1]
    # "auto" may pick different impls for different row counts (native_amx from 2 rows, native at 1), so
    # the selection is made here once per row count 1..64 (on zero-stride views: supports() reads only
    # shape, dtype and device) and the call only indexes it; None: no binder, quant_matmul runs
    bound: dict[str, object] = {}
    by_rows: list = [None]
    for rows in range(1, 65):
        name = select_impl(w, x.new_empty(1, 1, dtype=torch.float32).expand(rows, in_features), impl).name
        if name not in bound:
            binder = BINDERS.get(name)
            bound[name] = None if binder is None else binder(w)
        by_rows.append(bound[name])

    def call(x: Tensor) -> Tensor:
        if (x.dtype is not torch.float32 or x.device.type != "cpu" or x.dim() < 1
                or x.shape[-1] != in_features or (x.requires_grad and torch.is_grad_enabled())):
            return quant_matmul(w, x, impl)
        x2 = x.reshape(-1, in_features)
        if not 1 <= x2.shape[0] <= 64 or by_rows[x2.shape[0]] is None:
            return quant_matmul(w, x, impl)
        if not x2.is_contiguous():
            x2 = x2.contiguous()
        return by_rows[x2.shape[0]](x2).view(*x.shape[:-1], w.shape[0])
    return call
