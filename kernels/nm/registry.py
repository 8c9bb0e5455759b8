"""One dispatch for every N:M matmul implementation (HOUSE_STYLE 4.6).

``nm_matmul(w, x, impl="auto")`` computes what ``nn.Linear`` computes, ``y = x @ W.T``, with
``x: (..., in)`` and ``y: (..., out)``. NM-SpMM (arXiv 2503.01253, Eq. 1) writes the same product as
``C = A @ B`` with the sparse weight ``B: (K, N)``; ours is ``W = B.T`` (``(out, in) = (N, K)``) and
``x = A`` (``(M, K)``, M = tokens), so ``y = x @ W.T = A @ B = C``. Equivalently, in the
column-vector form ``Y = W @ X`` with ``X = x.T`` we return ``Y.T``.

Selection: ``REPROLAB_KERNEL=reference`` forces the reference everywhere (even over an explicit
``impl=``). ``REPROLAB_KERNEL=<name>`` replaces ``"auto"`` by that impl when it is an N:M impl (the
switch is shared with :mod:`kernels.quant`; other names are ignored). ``"auto"`` takes the
highest-priority impl whose ``available()`` is true and that ``supports(w, x)``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from kernels.nm.format import NMWeight

__all__ = ["Impl", "check_impl_name", "check_inputs", "get_impl", "impls", "nm_matmul", "register_impl", "select_impl"]

ENV_VAR = "REPROLAB_KERNEL"


@dataclass(frozen=True)
class Impl:
    """A registered implementation.

    Attributes:
        name: registry key (``"reference"``, ``"cpu"``, ``"triton"``, ``"semi_structured"``).
        fn: ``fn(w, x) -> y``; must call :func:`check_inputs` first.
        available: cheap predicate, true when the impl can run in this process at all.
        supports: ``supports(w, x)``, true when this impl handles that input (device, dtype, pattern).
        priority: higher wins in ``"auto"``.
        dtypes: the dtypes it computes in (others raise ``TypeError``).
        exact: True when it computes the reference's product (up to fp32 summation order). An
            inexact impl (e.g. one that rounds the activations to int8) runs only when named in
            ``impl=``; neither ``"auto"`` nor the ``REPROLAB_KERNEL`` switch ever selects it.
    """

    name: str
    fn: Callable[[NMWeight, Tensor], Tensor]
    available: Callable[[], bool]
    supports: Callable[[NMWeight, Tensor], bool]
    priority: int = 0
    dtypes: tuple = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
    exact: bool = True


class ImplRegistry:
    """Implementations of one kernel family by name (the N:M matmul here, ``kernels.quant``'s too).

    A duplicate name raises (no silent overwrite); an unknown one names the registered ones.
    """

    #: modules that define a family (the ``REPROLAB_KERNEL`` switch is checked against all of them)
    FAMILY_MODULES = ("kernels.nm.registry", "kernels.quant.registry")
    _families: list[ImplRegistry] = []

    def __init__(self, family: str):
        self.family = family
        self._impls: dict[str, Impl] = {}
        ImplRegistry._families.append(self)

    @classmethod
    def check_switch(cls, forced: str) -> None:
        """Raise when ``REPROLAB_KERNEL`` names an impl that no family registers (a typo would
        otherwise be ignored silently, since each family skips the names of the others)."""
        if forced in ("", "auto", "reference"):
            return
        for mod in cls.FAMILY_MODULES:
            importlib.import_module(mod)
        known = sorted({n for reg in cls._families for n in reg._impls})
        if forced not in known:
            raise ValueError(f"{ENV_VAR}={forced!r} names no kernel impl; choose reference or one of: "
                             f"{', '.join(known)}")

    def register(self, impl: Impl) -> Impl:
        """Add an impl; a duplicate name raises (no silent overwrite)."""
        if impl.name in self._impls:
            raise ValueError(f"{self.family} impl {impl.name!r} is already registered")
        self._impls[impl.name] = impl
        return impl

    def all(self) -> dict[str, Impl]:
        """All registered impls by name (available or not)."""
        return dict(self._impls)

    def get(self, name: str) -> Impl:
        if name not in self._impls:
            raise ValueError(f"unknown {self.family} impl {name!r}; registered: {sorted(self._impls)}")
        return self._impls[name]

    def check_name(self, name: str) -> str:
        """``name`` when it is ``"auto"`` or registered (a params validator's check), else ValueError."""
        if name != "auto" and name not in self._impls:
            raise ValueError(f"unknown {self.family} impl {name!r}; choose auto or one of: {', '.join(sorted(self._impls))}")
        return name

    def select(self, w, x: Tensor, impl: str = "auto") -> Impl:
        """Resolve ``impl`` and the env switch to a registered, usable :class:`Impl`.

        ``REPROLAB_KERNEL=reference`` forces the reference; another value replaces ``"auto"`` when it
        names an impl of this family (the switch is shared by every family, so a name another family
        registers is ignored here); ``"auto"`` takes the highest-priority available impl whose
        ``supports(w, x)`` holds, falling back to the reference.
        """
        forced = os.environ.get(ENV_VAR, "").strip()
        if forced not in self._impls:
            self.check_switch(forced)
        if forced == "reference":
            return self.get("reference")
        if forced in self._impls and not self._impls[forced].exact:
            raise ValueError(f"{ENV_VAR}={forced!r} names an inexact {self.family} impl (it rounds "
                             f"differently from the reference); select it with impl={forced!r} only")
        if impl == "auto" and forced in self._impls and self._impls[forced].exact:
            impl = forced
        if impl != "auto":
            chosen = self.get(impl)
            if not chosen.available():
                raise RuntimeError(f"{self.family} impl {impl!r} is not available in this process")
            return chosen
        for cand in sorted(self._impls.values(), key=lambda c: -c.priority):
            if cand.exact and cand.available() and cand.supports(w, x):
                return cand
        return self.get("reference")


_REGISTRY = ImplRegistry("N:M")
register_impl = _REGISTRY.register
check_impl_name = _REGISTRY.check_name
impls = _REGISTRY.all
get_impl = _REGISTRY.get


def check_inputs(w: NMWeight, x: Tensor) -> None:
    """Shared validation so every impl raises the same error class for the same bad input.

    Raises:
        TypeError: ``w`` not an NMWeight, ``x`` not a floating tensor, or dtypes differ.
        ValueError: ``x.shape[-1] != in``, ``x`` is 0-d, or devices differ.
    """
    if not isinstance(w, NMWeight):
        raise TypeError(f"w must be an NMWeight, got {type(w).__name__}")
    if not isinstance(x, Tensor) or not torch.is_floating_point(x):
        raise TypeError(f"x must be a floating-point tensor, got {getattr(x, 'dtype', type(x))}")
    if x.dim() < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"x has shape {tuple(x.shape)}; its last dim must equal in_features={w.shape[1]}"
        )
    if x.dtype != w.dtype:
        raise TypeError(f"x dtype {x.dtype} != weight dtype {w.dtype}")
    if x.device != w.device:
        raise ValueError(f"x is on {x.device} but the weight is on {w.device}")


def select_impl(w: NMWeight, x: Tensor, impl: str = "auto") -> Impl:
    """Resolve ``impl`` (and the env switch) to a registered, usable :class:`Impl` (:meth:`ImplRegistry.select`)."""
    return _REGISTRY.select(w, x, impl)


def nm_matmul(w: NMWeight, x: Tensor, impl: str = "auto") -> Tensor:
    """``y = x @ W.T`` for a compressed N:M weight (see the module docstring).

    Args:
        w: compressed ``(out, in)`` weight.
        x: ``(..., in)`` activations, same dtype and device as ``w``.
        impl: ``"auto"`` or a registered impl name.

    Returns:
        ``(..., out)`` in ``x.dtype``.
    """
    check_inputs(w, x)
    chosen = select_impl(w, x, impl)
    if torch.is_grad_enabled() and (w.values.requires_grad or x.requires_grad):
        return _NMMatmulFn.apply(w.values, x, w, chosen.fn)
    return chosen.fn(w, x)


class _NMMatmulFn(torch.autograd.Function):
    """Autograd for ``y = x @ W.T`` w.r.t. the kept values and ``x``; forward by any impl.

    Backward (the same for every impl, plain torch):
    ``dL/dx = dL/dy @ W`` and ``dL/dvalues[o, k'] = (dL/dy.T @ x)[o, cols[o, k']]``, i.e. the dense
    weight gradient restricted to the kept positions (gradients at pruned positions are dropped,
    as in a masked dense Linear whose mask is fixed).
    Assumption: training speed is not a goal of the kernels, so backward uses dense ops.
    """

    @staticmethod
    def forward(ctx, values: Tensor, x: Tensor, w: NMWeight, fn) -> Tensor:  # noqa: D102
        ctx.save_for_backward(values, x)
        ctx.w = w
        return fn(w, x)

    @staticmethod
    def backward(ctx, grad_y: Tensor):  # noqa: D102
        values, x = ctx.saved_tensors
        w: NMWeight = ctx.w.with_values(values)
        out_features, in_features = w.shape
        gy = grad_y.reshape(-1, out_features)  # (B, out)
        grad_values = grad_x = None
        if ctx.needs_input_grad[1]:
            grad_x = (gy @ w.to_dense()).view(x.shape)  # (B, out) @ (out, in)
        if ctx.needs_input_grad[0]:
            dense_grad = gy.T @ x.reshape(-1, in_features)  # (out, in)
            grad_values = dense_grad.gather(1, w.row_columns())  # (out, K')
        return grad_values, grad_x, None, None
