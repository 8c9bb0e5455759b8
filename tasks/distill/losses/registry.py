"""The loss registry: ``@register_loss(name)`` and the lookups a distill stage uses.

Each module of this package registers its losses on import; the package ``__init__``
imports every module in the folder (as ``kernels/nm/`` and ``flows/papers/`` do), so a new
loss file needs no second edit, and this registry knows none of its plug-ins.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch

from tasks.platform.errors import ReprolabError
from tasks.platform.registry import Registry


@dataclass(frozen=True)
class LossEntry:
    """A registered loss.

    Attributes:
        name: registry key (what ``params.yaml`` names).
        fn: the loss function.
        heads: 1 = the student gives one logits tensor; 2 = a ``(main, aux)`` tuple.
        min_teachers: how many teacher logits the loss needs (0 = plain supervised).
    """

    name: str
    fn: Callable[..., torch.Tensor]
    heads: int = 1
    min_teachers: int = 1

    @property
    def param_names(self) -> tuple[str, ...]:
        sig = inspect.signature(self.fn)
        return tuple(p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY)


_LOSSES: Registry[LossEntry] = Registry("loss", "losses")


def register_loss(name: str, heads: int = 1, min_teachers: int = 1):
    """Register ``fn(student, y, teachers, *, **params)`` under ``name``; duplicates raise."""

    def deco(fn):
        _LOSSES.add(name, LossEntry(name, fn, heads, min_teachers))
        return fn

    return deco


def get_loss(name: str) -> LossEntry:
    """The registered loss ``name``; unknown names raise listing what is registered."""
    return _LOSSES.lookup(name)


def registered_losses() -> list[str]:
    return _LOSSES.names()


def check_loss_params(name: str, params: dict) -> None:
    """Raise naming any key of ``params`` that loss ``name`` does not take, or a bad value."""
    entry = get_loss(name)
    unknown = sorted(set(params) - set(entry.param_names))
    if unknown:
        raise ReprolabError(
            f"loss {name!r} got unknown params {unknown}; it takes {sorted(entry.param_names)}"
        )
    for key in ("temperature", "tau", "logit_temperature"):
        if key in params and not float(params[key]) > 0:
            raise ReprolabError(f"loss {name!r}: {key} must be > 0, got {params[key]!r}")
    if "top_k" in params and not (isinstance(params["top_k"], int) and params["top_k"] >= 1):
        raise ReprolabError(f"loss {name!r}: top_k must be an integer >= 1, got {params['top_k']!r}")
