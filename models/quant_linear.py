"""``QuantLinear`` and ``NMQuantLinear``: ``nn.Linear`` layers whose weight is stored weight-only
low-bit (int8 / int4 per group; format in :mod:`kernels.quant.format`), optionally N:M sparse, and
multiplied by :func:`kernels.quant.quant_matmul` (the native C kernel on CPU for fp32 batches of at
most 64 rows, else dequantize-then-matmul).

Inference layers: the codes are buffers, not parameters (a gradient reaches the input and the bias
only). The state dict holds tensors only (safetensors-ready): ``codes`` (uint8), ``scales``,
``zeros`` (asymmetric only), ``qmeta`` (int64 [bits, group]), ``shape`` (int64 [out, in]), ``bias``;
N:M adds ``indices``, ``nmv`` (int64 [n, m, v]) and ``dense_shape``.

Conversions: :meth:`QuantLinear.from_linear` (round to nearest), :meth:`QuantLinear.from_codes` (the
codes, scales and zero points a fake-quantizer produced), :meth:`NMQuantLinear.from_nm_linear` (an
:class:`~models.nm_linear.NMLinear`, i.e. a pruned model from ``nm_sparsity``) and
:func:`quantize_model` for a whole model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from kernels.quant import NMQuantWeight, QuantWeight, bind_matmul, quant_matmul
from models.nm_linear import NMLinear

__all__ = ["NMQuantLinear", "QuantLinear", "quantize_model", "weight_nbytes"]


class _QuantBase(nn.Module):
    """Shared storage of a :class:`QuantWeight` as buffers, plus bias and forward."""

    def __init__(self, q: QuantWeight, bias: Tensor | None, impl: str):
        super().__init__()
        self.impl = impl
        self.bits, self.group = q.bits, q.group
        self.register_buffer("codes", q.codes.clone())
        self.register_buffer("scales", q.scales.clone())
        self.register_buffer("zeros", None if q.zeros is None else q.zeros.clone())
        self.register_buffer("qmeta", torch.tensor([q.bits, q.group], dtype=torch.int64))
        self.register_buffer("shape", torch.tensor(list(q.shape), dtype=torch.int64))
        if bias is not None:
            self.bias = nn.Parameter(bias.detach().clone().float())
        else:
            self.register_parameter("bias", None)

    def _q(self) -> QuantWeight:
        return QuantWeight(codes=self.codes, scales=self.scales, zeros=self.zeros, bits=self.bits,
                           group=self.group, shape=tuple(int(v) for v in self.shape.tolist()))

    def _build_weight(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def weight(self):
        """The layer's quantized weight over its buffers, built (and validated) once and reused while
        the buffers are the same tensors: a forward at batch 1 is otherwise dominated by rebuilding it
        (measured: 60 of 375 us per call for a 128x384 int4 layer). The impls still re-check the
        fields on every call (``check_inputs``); a replaced buffer (``.to()``, assignment) rebuilds."""
        key = tuple(self._buffers.values())
        cached = self.__dict__.get("_weight_cache")
        if cached is None or len(cached[0]) != len(key) or any(a is not b for a, b in zip(cached[0], key)):
            cached = (key, self._build_weight())
            self.__dict__["_weight_cache"] = cached
        return cached[1]

    _CACHES = ("_weight_cache", "_bound")

    def _drop_caches(self) -> None:
        for key in self._CACHES:
            self.__dict__.pop(key, None)

    def __setattr__(self, name, value):
        # a replaced buffer or format field invalidates the cached weight and the bound call path
        # (NOTE: writing ``layer._buffers[...]`` directly bypasses this; use attribute assignment)
        if name in ("impl", "bits", "group") or name in self.__dict__.get("_buffers", {}):
            self._drop_caches()
        super().__setattr__(name, value)

    def _apply(self, fn, recurse=True):
        self._drop_caches()
        return super()._apply(fn, recurse)

    def forward(self, x: Tensor) -> Tensor:
        bound = self.__dict__.get("_bound")
        if bound is not None:  # bound once (bind_matmul): only the per-x checks run
            y = bound(x)  # (..., out)
        else:
            w = self.weight()
            fast_case = (x.dtype is torch.float32 and x.device.type == "cpu" and x.dim() >= 1
                         and 1 <= x.numel() // max(1, x.shape[-1]) <= 64)
            call = bind_matmul(w, x, impl=self.impl) if fast_case else None
            if call is not None:
                self.__dict__["_bound"] = call
                y = call(x)
            else:
                y = quant_matmul(w, x, impl=self.impl)
        return y if self.bias is None else y + self.bias

    def to_dense(self) -> Tensor:
        """The dequantized dense ``(out, in)`` weight (what the layer multiplies by)."""
        return self.weight().dequantize()

    @property
    def nbytes(self) -> int:
        """Bytes the matmul reads for the weight (codes + scales + zeros [+ N:M indices])."""
        return self.weight().nbytes

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self._drop_caches()
        for key in ("qmeta", "shape", "nmv"):
            if hasattr(self, key) and f"{prefix}{key}" in state_dict and not torch.equal(
                    state_dict[f"{prefix}{key}"].cpu(), getattr(self, key).cpu()):
                raise ValueError(f"{prefix}{key} = {state_dict[prefix + key].tolist()} does not "
                                 f"match this layer's {getattr(self, key).tolist()}")
        if (self.zeros is None) != (f"{prefix}zeros" not in state_dict):
            raise ValueError(f"{prefix}zeros: the state dict and this layer disagree on symmetric "
                             "vs asymmetric codes")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class QuantLinear(_QuantBase):
    """``y = x @ dequantize(W).T + b`` with ``W`` stored as int8/int4 codes per group.

    Args:
        weight: the quantized ``(out, in)`` weight.
        bias: ``(out,)`` or None (kept in fp32).
        impl: ``quant_matmul`` implementation (``"auto"`` picks the fastest available).
    """

    def __init__(self, weight: QuantWeight, bias: Tensor | None = None, impl: str = "auto"):
        if not isinstance(weight, QuantWeight):
            raise TypeError(f"weight must be a QuantWeight, got {type(weight).__name__}")
        if bias is not None and tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"bias shape {tuple(bias.shape)} != ({weight.shape[0]},)")
        super().__init__(weight, bias, impl)
        self.out_features, self.in_features = weight.shape

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, bits: int, group: int | None = None,
                    symmetric: bool = True, scale_dtype: torch.dtype = torch.float16,
                    impl: str = "auto") -> QuantLinear:
        """Round-to-nearest quantization of ``linear.weight`` (``group`` None = per-channel)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"expected nn.Linear, got {type(linear).__name__}")
        q = QuantWeight.quantize(linear.weight.detach().float(), bits=bits, group=group,
                                 symmetric=symmetric, scale_dtype=scale_dtype)
        return cls(q, None if linear.bias is None else linear.bias.detach(), impl=impl)

    @classmethod
    def from_codes(cls, codes: Tensor, scales: Tensor, zeros: Tensor | None = None,
                   bias: Tensor | None = None, *, bits: int, group: int,
                   scale_dtype: torch.dtype = torch.float32, impl: str = "auto") -> QuantLinear:
        """From a fake-quantizer's integer codes, scales and zero points (see
        :meth:`QuantWeight.from_codes`). fp32 scales by default, so the layer computes exactly the
        fake-quantized weight ``scales * (codes - zeros)``."""
        q = QuantWeight.from_codes(codes, scales, zeros, bits=bits, group=group,
                                   scale_dtype=scale_dtype)
        return cls(q, bias, impl=impl)

    @classmethod
    def from_state_dict(cls, sd: dict[str, Tensor], prefix: str = "", impl: str = "auto") -> QuantLinear:
        return cls(QuantWeight.from_state_dict(sd, prefix), sd.get(f"{prefix}bias"), impl=impl)

    def _build_weight(self) -> QuantWeight:
        return self._q()

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bits={self.bits}, group={self.group}, symmetric={self.zeros is None}, "
                f"bias={self.bias is not None}, impl={self.impl}")


class NMQuantLinear(_QuantBase):
    """``y = x @ W.T + b`` with ``W`` N:M sparse and its kept values stored as int8/int4 codes.

    Args:
        weight: the :class:`NMQuantWeight`.
        bias, impl: as in :class:`QuantLinear`.
    """

    def __init__(self, weight: NMQuantWeight, bias: Tensor | None = None, impl: str = "auto"):
        if not isinstance(weight, NMQuantWeight):
            raise TypeError(f"weight must be an NMQuantWeight, got {type(weight).__name__}")
        if bias is not None and tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"bias shape {tuple(bias.shape)} != ({weight.shape[0]},)")
        super().__init__(weight.q, bias, impl)
        self.out_features, self.in_features = weight.shape
        self.n, self.m, self.v = weight.n, weight.m, weight.v
        self.register_buffer("indices", weight.indices.clone())
        self.register_buffer("nmv", torch.tensor([weight.n, weight.m, weight.v], dtype=torch.int64))
        self.register_buffer("dense_shape", torch.tensor(list(weight.shape), dtype=torch.int64))
        self._index_cache: dict = {}  # index layouts derived once (see NMWeight)

    @classmethod
    def from_nm_linear(cls, layer: NMLinear, *, bits: int, group: int | None = None,
                       symmetric: bool = True, scale_dtype: torch.dtype = torch.float16,
                       impl: str = "auto") -> NMQuantLinear:
        """Quantize the kept values of an :class:`NMLinear` (``group`` counts kept values)."""
        if not isinstance(layer, NMLinear):
            raise TypeError(f"expected NMLinear, got {type(layer).__name__}")
        nq = NMQuantWeight.from_nm(layer.nm_weight(), bits=bits, group=group, symmetric=symmetric,
                                   scale_dtype=scale_dtype)
        return cls(nq, None if layer.bias is None else layer.bias.detach(), impl=impl)

    @classmethod
    def from_linear(cls, linear: nn.Linear, mask: Tensor | None = None, *, n: int, m: int,
                    v: int = 1, bits: int, group: int | None = None, symmetric: bool = True,
                    scale_dtype: torch.dtype = torch.float16, impl: str = "auto") -> NMQuantLinear:
        """Prune ``linear`` to N:M (``mask`` or magnitude), then quantize the kept values."""
        return cls.from_nm_linear(NMLinear.from_linear(linear, mask, n=n, m=m, v=v), bits=bits,
                                  group=group, symmetric=symmetric, scale_dtype=scale_dtype,
                                  impl=impl)

    @classmethod
    def from_state_dict(cls, sd: dict[str, Tensor], prefix: str = "",
                        impl: str = "auto") -> NMQuantLinear:
        return cls(NMQuantWeight.from_state_dict(sd, prefix), sd.get(f"{prefix}bias"), impl=impl)

    def _build_weight(self) -> NMQuantWeight:
        w = NMQuantWeight(q=self._q(), indices=self.indices, n=self.n, m=self.m, v=self.v,
                          shape=(self.out_features, self.in_features))
        w._cache = self._index_cache
        return w

    def _apply(self, fn, recurse=True):
        self._index_cache.clear()
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"n:m={self.n}:{self.m}, v={self.v}, bits={self.bits}, group={self.group}, "
                f"symmetric={self.zeros is None}, bias={self.bias is not None}, impl={self.impl}")


def quantize_model(model: nn.Module, *, bits: int, group: int | None = None, symmetric: bool = True,
                   include: Callable[[str, nn.Module], bool] | None = None,
                   scale_dtype: torch.dtype = torch.float16, impl: str = "auto") -> nn.Module:
    """A copy of ``model`` with ``nn.Linear`` -> :class:`QuantLinear` and ``NMLinear`` ->
    :class:`NMQuantLinear` (round to nearest).

    Args:
        model: not modified.
        bits, group, symmetric, scale_dtype: the format (``group`` None = per row; a layer whose
            width the group does not divide raises ``ValueError`` naming the layer).
        include: ``include(name, layer)`` selects layers; default: every Linear / NMLinear.

    Raises:
        ValueError: no layer converts, or a selected layer cannot take the format.
    """
    model = copy.deepcopy(model)
    chosen = [(name, mod) for name, mod in model.named_modules()
              if isinstance(mod, (nn.Linear, NMLinear)) and (include is None or include(name, mod))]
    if not chosen:
        raise ValueError("no nn.Linear / NMLinear layer selected for quantization")
    for name, mod in chosen:
        try:
            if isinstance(mod, NMLinear):
                new = NMQuantLinear.from_nm_linear(mod, bits=bits, group=group, symmetric=symmetric,
                                                   scale_dtype=scale_dtype, impl=impl)
            else:
                new = QuantLinear.from_linear(mod, bits=bits, group=group, symmetric=symmetric,
                                              scale_dtype=scale_dtype, impl=impl)
        except ValueError as err:
            raise ValueError(f"layer {name!r}: {err}") from None
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
    return model


def weight_nbytes(model: nn.Module) -> int:
    """Bytes of every weight a forward reads: quantized layers count their codes/scales/zeros (and
    N:M indices), :class:`NMLinear` its kept values + indices, other parameters their storage."""
    total, seen = 0, set()
    for mod in model.modules():
        if isinstance(mod, _QuantBase):
            total += mod.nbytes + (0 if mod.bias is None else mod.bias.numel() * mod.bias.element_size())
            seen.update(id(p) for p in mod.parameters(recurse=False))
        elif isinstance(mod, NMLinear):
            total += mod.nm_weight().nbytes + (
                0 if mod.bias is None else mod.bias.numel() * mod.bias.element_size())
            seen.update(id(p) for p in mod.parameters(recurse=False))
    for p in model.parameters():
        if id(p) not in seen:
            total += p.numel() * p.element_size()
            seen.add(id(p))
    return total
