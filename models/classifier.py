"""Small classifiers for tabular / 1-D signal data (digits, mnist1d, breast cancer).

Models are registered by name (timm style) and built from a :class:`ModelSpec`, which is
also what ``params.yaml`` carries under ``train.model``. Duplicate names raise.
"""

from __future__ import annotations

from typing import Callable

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from tasks.platform.params import Width

_MODELS: dict[str, Callable[["ModelSpec", int, int], nn.Module]] = {}


def register_model(name: str):
    """Register a factory ``f(spec, in_features, num_classes) -> nn.Module`` under ``name``."""

    def deco(fn):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = fn
        return fn

    return deco


class ModelSpec(BaseModel):
    """Architecture of a classifier.

    Attributes:
        arch: registered model name (``mlp``).
        hidden: widths of the hidden layers, input to output.
        dropout: dropout probability after each hidden activation.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    arch: str = "mlp"
    hidden: tuple[Width, ...] = Field(default=(256, 128), min_length=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @field_validator("arch")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in _MODELS:
            raise ValueError(f"unknown model arch; registered: {', '.join(sorted(_MODELS))}")
        return v

    def linear_in_features(self, in_features: int) -> list[int]:
        """Input width of every ``nn.Linear`` in order (what N:M groups run along)."""
        return [in_features, *self.hidden]


class MLP(nn.Module):
    """``in_features -> hidden[0] -> ... -> num_classes`` with ReLU.

    Shapes: x (B, in_features) float32 -> logits (B, num_classes).
    """

    def __init__(self, in_features: int, num_classes: int, hidden=(256, 128), dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model("mlp")
def _mlp(spec: ModelSpec, in_features: int, num_classes: int) -> nn.Module:
    return MLP(in_features, num_classes, spec.hidden, spec.dropout)


class DualHeadMLP(MLP):
    """:class:`MLP` with a second, auxiliary linear head on the same backbone.

    Dual-Head KD (Yang et al. 2024, arXiv 2411.08937): the main head is what ``forward``
    returns (and what evaluation uses); :meth:`forward_heads` gives both for training.

    Shapes: x (B, in_features) -> logits (B, num_classes); ``forward_heads`` -> two of them.
    """

    def __init__(self, in_features: int, num_classes: int, hidden=(256, 128), dropout: float = 0.0):
        super().__init__(in_features, num_classes, hidden, dropout)
        self.aux_head = nn.Linear(self.head.in_features, num_classes)

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.head(h), self.aux_head(h)


@register_model("mlp_dual_head")
def _mlp_dual_head(spec: ModelSpec, in_features: int, num_classes: int) -> nn.Module:
    return DualHeadMLP(in_features, num_classes, spec.hidden, spec.dropout)


def build_model(spec: ModelSpec, in_features: int, num_classes: int) -> nn.Module:
    """Build the registered model ``spec.arch``; raises ``ValueError`` naming an unknown arch."""
    if spec.arch not in _MODELS:
        raise ValueError(f"unknown model arch {spec.arch!r}; registered: {sorted(_MODELS)}")
    return _MODELS[spec.arch](spec, in_features, num_classes)
