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
        train_outputs: optional ``f(model, x)`` giving what ``loss_fn`` receives as its
            first argument during training instead of ``model(x)`` (e.g. both heads of a
            two-head student). Validation always uses ``model(x)``.
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        masks: dict[str, torch.Tensor] | None = None,
        loss_fn: LossFn = cross_entropy,
        train_outputs: Callable[[nn.Module, torch.Tensor], object] | None = None,
    ):
        super().__init__()
        self.model = model
        self.lr, self.weight_decay = lr, weight_decay
        self.loss_fn = loss_fn
        self.train_outputs = train_outputs
        self.masks = dict(masks or {})
        params = dict(model.named_parameters())
        for name, mask in self.masks.items():
            if name not in params or params[name].shape != mask.shape:
                raise ValueError(f"mask {name!r} does not match a parameter of the model")
        self.apply_masks()
        self.history: list[dict[str, float]] = []
        # Epoch sums of the training loss, accumulated by hand: ``self.log`` per step costs
        # ~1 ms of Lightning bookkeeping, as much as a small MLP's whole step on CPU.
        self._loss_sum = torch.zeros(())
        self._loss_n = 0
        self._val_sums: dict[str, torch.Tensor] = {}  # same for validation (see validation_step)
        self._val_n = torch.tensor(0)
        # PLATFORM: we step the optimiser ourselves (manual optimisation). On one CPU device
        # in fp32 that is exactly what Lightning's automatic loop does, minus ~1 ms/step of
        # closure/hook plumbing (benchmarks/bench_distill.py); elsewhere the Lightning API.
        self.automatic_optimization = False
        self._raw_optimizer: torch.optim.Optimizer | None = None

    @torch.no_grad()
    def apply_masks(self) -> None:
        if not self.masks:
            return
        params = dict(self.model.named_parameters())
        for name, mask in self.masks.items():
            params[name].mul_(mask.to(params[name].dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, dataloader_iter):
        # PLATFORM: Lightning's ``dataloader_iter`` form: we take the next batch ourselves.
        # Lightning still runs one step (with its hooks) per batch, in the loader's order, and
        # validates after the last one; it skips its per-batch inspection of this method's
        # signature and the batch-transfer plumbing, ~4 % of a small MLP's step on CPU
        # (benchmarks/bench_distill.py). NOTE: no batch-transfer hook is overridden here.
        batch, _, _ = next(dataloader_iter)
        x, y = self._to_device(batch)
        out = self.model(x) if self.train_outputs is None else self.train_outputs(self.model, x)
        loss = self.loss_fn(out, y, x)
        self._optimizer_step(loss)
        # Same value as self.log(on_epoch=True): the batch-size-weighted epoch mean.
        self._loss_sum.add_(loss.detach() * len(y))
        self._loss_n += len(y)
        return loss

    def _to_device(self, batch):
        """What Lightning does to a batch before ``training_step``, minus the no-op device walk."""
        batch = self.trainer.precision_plugin.convert_input(batch)
        if all(isinstance(t, torch.Tensor) and t.device == self.device for t in batch):
            return batch  # every CPU run: nothing to move
        return self.trainer.strategy.batch_to_device(batch)

    def _optimizer_step(self, loss: torch.Tensor) -> None:
        if self._raw_optimizer is not None:
            # Fast path: plain fp32 on a single device (see __init__).
            self._raw_optimizer.zero_grad()
            loss.backward()
            self._raw_optimizer.step()
        else:
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
        # PLATFORM: re-zero pruned weights after each Adam step (moments/decay would move them).
        self.apply_masks()

    def on_train_start(self):
        plain = self.trainer.precision == "32-true" and type(self.trainer.strategy).__name__ == "SingleDeviceStrategy"
        # NOTE: on the fast path trainer.global_step stays 0 (no Lightning optimizer step is
        # recorded); nothing here depends on it (epochs bound the run, no logger).
        self._raw_optimizer = self.optimizers().optimizer if plain else None

    def on_validation_epoch_start(self):
        self._val_sums = {"val_loss": torch.zeros(()), "val_acc": torch.zeros(())}
        self._val_n = torch.tensor(0)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.model(x)
        # Batch-size-weighted epoch means, accumulated by hand with exactly the arithmetic of
        # ``self.log(on_epoch=True)`` (value 0. + mean * B per batch, then / sum of B): the same
        # floats, without ~0.1 ms of Lightning bookkeeping per call.
        n = len(y)
        for key, value in (("val_loss", F.cross_entropy(logits, y)), ("val_acc", (logits.argmax(-1) == y).float().mean())):
            self._val_sums[key] = self._val_sums[key] + value * n
        self._val_n = self._val_n + n

    def on_train_epoch_start(self):
        self._loss_sum, self._loss_n = torch.zeros(()), 0
        self._val_sums, self._val_n = {}, torch.tensor(0)

    def on_train_epoch_end(self):
        # NOTE: Lightning runs validation before this hook, so the val sums are in (empty when
        # there was no validation this epoch). The val metrics are not in trainer.callback_metrics.
        val = {k: float(v / self._val_n) for k, v in self._val_sums.items()} if int(self._val_n) else {}
        self.history.append(
            {
                "epoch": float(self.current_epoch),
                "train_loss": float(self._loss_sum / max(self._loss_n, 1)),
                **val,
            }
        )

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
