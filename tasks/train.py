"""Training stage: a classifier per seed, with Lightning, deterministic on CPU.

Weights of several seeds live in one safetensors file with keys ``"<seed>.<param>"``
(:func:`pack_seeds` / :func:`unpack_seeds`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

import lightning as L
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from models import ModelSpec, build_model
from models.lit import LitClassifier, LossFn, cross_entropy
from tasks.data_prep import num_features, table_to_tensors


class OptimParams(BaseModel):
    """Optimisation settings shared by training, fine-tuning and distillation.

    Attributes:
        max_epochs: passes over the training split.
        batch_size: minibatch size.
        lr: Adam learning rate.
        weight_decay: Adam L2 weight decay.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)


class TrainParams(OptimParams):
    """Params of the ``train`` stage.

    Attributes:
        model: architecture (see :class:`models.ModelSpec`).
        seeds: one model is trained per seed (weights init + data order).
    """

    model: ModelSpec = ModelSpec()
    seeds: tuple[int, ...] = Field(default=(0, 1, 2), min_length=1)


VAL_BATCH_SIZE = 1024  # rows per validation batch (fixed; it does not change the metrics)


def num_classes(*tables: pa.Table) -> int:
    return int(max(int(pa.compute.max(t.column("label")).as_py()) for t in tables)) + 1


def pack_seeds(per_seed: dict[int, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {f"{seed}.{k}": v for seed, sd in per_seed.items() for k, v in sd.items()}


def unpack_seeds(sd: dict[str, torch.Tensor]) -> dict[int, dict[str, torch.Tensor]]:
    out: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in sd.items():
        seed, _, name = key.partition(".")
        out.setdefault(int(seed), {})[name] = v
    return dict(sorted(out.items()))


@contextlib.contextmanager
def torch_threads(n: int | None = None):
    """Run with ``n`` intra-op threads (default ``$REPROLAB_TORCH_THREADS`` or 1), then restore.

    NOTE: for these small MLPs, one thread is several times faster than two on a 2-core box
    (measured 3.9 s vs 29.7 s for 5 epochs on digits under load: thread contention on tiny
    matmuls); set REPROLAB_TORCH_THREADS for larger models.
    """
    n = n or int(os.environ.get("REPROLAB_TORCH_THREADS", "1"))
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit(
    model: nn.Module,
    optim: OptimParams,
    train: pa.Table,
    val: pa.Table,
    seed: int,
    masks: dict[str, torch.Tensor] | None = None,
    loss_fn: LossFn = cross_entropy,
    train_outputs=None,
) -> list[dict[str, float]]:
    """Train ``model`` in place with Lightning; return the per-epoch history.

    ``loss_fn(out, y, x)`` and ``train_outputs(model, x)`` (what ``out`` is during
    training; default ``model(x)``) are passed to :class:`models.lit.LitClassifier`.

    Deterministic on CPU for a given seed: the seed fixes the data order and any dropout.
    """
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    xt, yt, _ = table_to_tensors(train)
    xv, yv, _ = table_to_tensors(val)
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(xt, yt), batch_size=optim.batch_size, shuffle=True, generator=g)
    # PLATFORM: the validation split is already one in-memory tensor; slicing it gives the
    # very batches a sequential DataLoader(batch_size=1024) would collate row by row (same
    # values, same order), without the per-sample indexing (~5 ms per epoch on CPU).
    val_loader = DataLoader(list(zip(xv.split(VAL_BATCH_SIZE), yv.split(VAL_BATCH_SIZE))), batch_size=None)
    lit = LitClassifier(
        model, optim.lr, optim.weight_decay, masks=masks, loss_fn=loss_fn, train_outputs=train_outputs
    )
    L.seed_everything(seed, workers=True, verbose=False)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=optim.max_epochs,
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    with warnings.catch_warnings():
        # NOTE: Lightning warns that a small CPU DataLoader has few workers; that is by design.
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*number of training batches.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # lightning 2.6.6 vs torch 2.13
        # NOTE: LitClassifier.training_step takes one batch per step from ``dataloader_iter``;
        # Lightning flags that signature as experimental. tests/distill/test_lit_fast_path.py
        # pins the result to a plain torch loop, bit for bit.
        warnings.filterwarnings("ignore", message=".*dataloader_iter.*")
        with torch_threads():
            trainer.fit(lit, loader, val_loader)
    return lit.history


def init_model(spec: ModelSpec, train: pa.Table, n_classes: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(spec, num_features(train), n_classes)


@torch.no_grad()
def predict_logits(model: nn.Module, table: pa.Table) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (logits (n, C), labels (n,), ids (n,)) of ``model`` on a split table."""
    x, y, ids = table_to_tensors(table)
    model.eval()
    return model(x), y, ids


def accuracy_and_loss(model: nn.Module, table: pa.Table) -> dict[str, float]:
    logits, y, _ = predict_logits(model, table)
    return {
        "acc": float((logits.argmax(-1) == y).float().mean()),
        "loss": float(F.cross_entropy(logits, y)),
    }


def train(params: TrainParams, *, train: pa.Table, val: pa.Table) -> dict[str, object]:
    """Train one dense classifier per seed.

    Returns:
        ``weights``: all seeds' state_dicts packed (:func:`pack_seeds`);
        ``metrics``: per-seed final val accuracy/loss and the per-epoch history.
    """
    n_classes = num_classes(train, val)
    per_seed, metrics = {}, {}
    for seed in params.seeds:
        model = init_model(params.model, train, n_classes, seed)
        history = fit(model, params, train, val, seed)
        per_seed[seed] = {k: v.clone() for k, v in model.state_dict().items()}
        metrics[str(seed)] = {"val": accuracy_and_loss(model, val), "history": history}
    return {"weights": pack_seeds(per_seed), "metrics": {"num_classes": n_classes, "seeds": metrics}}
