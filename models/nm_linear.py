"""``NMLinear``: an ``nn.Linear`` whose weight is stored compressed N:M and multiplied by
:func:`kernels.nm.nm_matmul` (NM-SpMM, arXiv 2503.01253; format in :mod:`kernels.nm.format`).

Only the kept values are parameters, so a fine-tuning optimizer can never revive a pruned weight:
this is the fixed-mask fine-tuning of NVIDIA ASP (arXiv 2104.08378) by construction. Backward goes
through ``nm_matmul``'s autograd (gradients w.r.t. the kept values and the input).

The state dict is safetensors-ready (tensors only): ``values``, ``indices`` (packed uint8),
``nmv`` (int64 [n, m, v]), ``shape`` (int64 [out, in]) and ``bias``; see
:meth:`NMLinear.from_state_dict`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from kernels.nm import NMWeight, nm_matmul

__all__ = ["NMLinear", "convert_linear", "sparsify_model"]


class NMLinear(nn.Module):
    """``y = x @ W.T + b`` with ``W`` compressed N:M.

    Args:
        weight: the compressed ``(out, in)`` weight.
        bias: ``(out,)`` or None.
        impl: ``nm_matmul`` implementation (``"auto"`` picks the fastest available).

    Shapes: x ``(..., in)`` -> y ``(..., out)``; values ``(out, in*n/m)``.
    """

    def __init__(self, weight: NMWeight, bias: Tensor | None = None, impl: str = "auto"):
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.n, self.m, self.v = weight.n, weight.m, weight.v
        self.impl = impl
        self.values = nn.Parameter(weight.values.detach().clone())
        self.register_buffer("indices", weight.indices.clone())
        self.register_buffer("nmv", torch.tensor([weight.n, weight.m, weight.v], dtype=torch.int64))
        self.register_buffer("shape", torch.tensor(list(weight.shape), dtype=torch.int64))
        if bias is not None:
            if bias.shape != (self.out_features,):
                raise ValueError(f"bias shape {tuple(bias.shape)} != ({self.out_features},)")
            self.bias = nn.Parameter(bias.detach().clone().to(weight.dtype))
        else:
            self.register_parameter("bias", None)
        self._index_cache: dict = {}  # index-only layouts shared by every forward (see NMWeight)

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_linear(cls, linear: nn.Linear, mask: Tensor | None = None, *, n: int, m: int,
                    v: int = 1, impl: str = "auto", strict: bool = False) -> NMLinear:
        """See :func:`convert_linear`."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"expected nn.Linear, got {type(linear).__name__}")
        w = linear.weight.detach()
        nw = NMWeight.from_dense(w, mask, n=n, m=m, v=v)
        if strict:
            dropped = (w != 0) & ~nw.mask()
            if bool(dropped.any()):
                raise ValueError(
                    f"weight {tuple(w.shape)} is not {n}:{m} (v={v}): {int(dropped.sum())} non-zero "
                    "entries fall outside the mask"
                )
        bias = None if linear.bias is None else linear.bias.detach()
        return cls(nw, bias, impl=impl)

    @classmethod
    def from_state_dict(cls, sd: dict[str, Tensor], prefix: str = "", impl: str = "auto") -> NMLinear:
        """Rebuild from :meth:`state_dict` tensors (e.g. a safetensors file) under ``prefix``."""
        weight = NMWeight.from_state_dict(sd, prefix)
        return cls(weight, sd.get(f"{prefix}bias"), impl=impl)

    # -- use --------------------------------------------------------------------------------
    def nm_weight(self) -> NMWeight:
        """The current compressed weight (values are this module's Parameter, so grads flow)."""
        w = NMWeight(values=self.values, indices=self.indices, n=self.n, m=self.m, v=self.v,
                     shape=(self.out_features, self.in_features))
        w._cache = self._index_cache
        return w

    def to_dense(self) -> Tensor:
        """Dense ``(out, in)`` weight with zeros at pruned positions."""
        return self.nm_weight().to_dense()

    def forward(self, x: Tensor) -> Tensor:
        y = nm_matmul(self.nm_weight(), x, impl=self.impl)  # (..., out)
        return y if self.bias is None else y + self.bias

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for key in ("nmv", "shape"):
            if f"{prefix}{key}" in state_dict and not torch.equal(
                state_dict[f"{prefix}{key}"].cpu(), getattr(self, key).cpu()
            ):
                raise ValueError(
                    f"{prefix}{key} = {state_dict[prefix + key].tolist()} does not match this "
                    f"layer's {getattr(self, key).tolist()}"
                )
        self._index_cache.clear()  # indices may change in place
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _apply(self, fn, recurse=True):
        self._index_cache.clear()  # device moves re-derive index layouts lazily
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"n:m={self.n}:{self.m}, v={self.v}, bias={self.bias is not None}, impl={self.impl}")


def convert_linear(module: nn.Linear, mask: Tensor | None = None, *, n: int, m: int, v: int = 1,
                   impl: str = "auto", strict: bool = False) -> NMLinear:
    """Compress one ``nn.Linear`` to an :class:`NMLinear`.

    Args:
        module: the dense layer (weight ``(out, in)``).
        mask: bool ``(out, in)`` N:M mask; None takes :func:`kernels.nm.magnitude_mask`, which on an
            already N:M-pruned weight reproduces its pattern exactly.
        n, m, v: the pattern.
        impl: ``nm_matmul`` impl for the new layer.
        strict: raise ``ValueError`` if a non-zero weight would be dropped (use on pruned models).
    """
    return NMLinear.from_linear(module, mask, n=n, m=m, v=v, impl=impl, strict=strict)


def sparsify_model(model: nn.Module, n: int, m: int, v: int = 1, *,
                   include: Callable[[str, nn.Linear], bool] | None = None,
                   masks: dict[str, Tensor] | None = None, impl: str = "auto",
                   strict: bool = False) -> nn.Module:
    """A copy of ``model`` with its ``nn.Linear`` layers replaced by :class:`NMLinear`.

    Args:
        model: not modified.
        n, m, v: the pattern.
        include: ``include(name, linear)`` selects layers; default: every Linear whose input width
            is a multiple of ``m`` (others stay dense).
        masks: optional ``{qualified layer name: bool mask}``; missing names use the magnitude mask.
        impl, strict: as in :func:`convert_linear`.

    Raises:
        ValueError: if ``masks`` names a layer that is not a converted Linear, or no layer converts.
    """
    model = copy.deepcopy(model)
    masks = dict(masks or {})
    chosen = [
        (name, mod) for name, mod in model.named_modules()
        if isinstance(mod, nn.Linear)
        and (include(name, mod) if include is not None else mod.in_features % m == 0)
    ]
    unknown = set(masks) - {name for name, _ in chosen}
    if unknown:
        raise ValueError(f"masks given for layers that are not converted: {sorted(unknown)}")
    if not chosen:
        raise ValueError(f"no nn.Linear in the model can be made {n}:{m} (in_features % {m} != 0)")
    for name, mod in chosen:
        new = convert_linear(mod, masks.get(name), n=n, m=m, v=v, impl=impl, strict=strict)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
    return model
