"""Thin Lightning wrapper: any classifier ``nn.Module`` + a loss, optionally with fixed masks."""

from __future__ import annotations

from typing import Callable

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y)


class LitClassifier(L.LightningModule):
    """Train ``model`` with Adam on ``loss_fn(logits, y, x)``.

    Args:
        model: the network; ``model(x)`` gives logits (B, C).
        lr, weight_decay: Adam settings.
        masks: ``{parameter name: bool tensor}``; masked-out weights are zeroed before
            training and after every optimiser step, so a pruning mask is held fixed.
        loss_fn: defaults to cross-entropy; distillation passes its own.
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        masks: dict[str, torch.Tensor] | None = None,
        loss_fn: LossFn = cross_entropy,
    ):
        super().__init__()
        self.model = model
        self.lr, self.weight_decay = lr, weight_decay
        self.loss_fn = loss_fn
        self.masks = dict(masks or {})
        params = dict(model.named_parameters())
        for name, mask in self.masks.items():
            if name not in params or params[name].shape != mask.shape:
                raise ValueError(f"mask {name!r} does not match a parameter of the model")
        self.apply_masks()
        self.history: list[dict[str, float]] = []

    @torch.no_grad()
    def apply_masks(self) -> None:
        params = dict(self.model.named_parameters())
        for name, mask in self.masks.items():
            params[name].mul_(mask.to(params[name].dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss_fn(self.model(x), y, x)
        self.log("train_loss", loss, on_epoch=True, on_step=False, prog_bar=False)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.model(x)
        self.log("val_loss", F.cross_entropy(logits, y), on_epoch=True)
        self.log("val_acc", (logits.argmax(-1) == y).float().mean(), on_epoch=True)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        # PLATFORM: re-zero pruned weights after each Adam step (moments/decay would move them).
        self.apply_masks()

    def on_train_epoch_end(self):
        # NOTE: Lightning runs validation before this hook, so all three metrics are in.
        m = self.trainer.callback_metrics
        self.history.append(
            {
                "epoch": float(self.current_epoch),
                **{k: float(m[k]) for k in ("train_loss", "val_loss", "val_acc") if k in m},
            }
        )

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
