"""Training stage: a classifier per seed, with Lightning Fabric, deterministic on CPU.

Also the training library every domain builds on: :func:`fit`, :func:`init_model`,
:func:`load_model` (the one way to rebuild a model from saved weights), :func:`predict_logits`,
:func:`evaluate_classifier` (item-level predictions) and the packed-weights formats: several
seeds in one safetensors file keyed ``"<seed>.<param>"`` (:func:`pack_seeds`), several groups
of those keyed ``"<group>/<seed>.<param>"`` (:func:`pack_groups`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from models import ModelSpec, build_model
from tasks.data_prep import num_features, table_to_tensors
from tasks.platform.errors import ArtifactError
from tasks.platform.params import Epochs, Seeds
from tasks.platform.progress import progress

if TYPE_CHECKING:
    import lightning as L

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The default ``loss_fn(out, y, x)`` of :func:`fit`."""
    return F.cross_entropy(logits, y)


class OptimParams(BaseModel):
    """Optimisation settings shared by training, fine-tuning and distillation.

    Attributes:
        max_epochs: passes over the training split.
        batch_size: minibatch size.
        lr: Adam learning rate.
        weight_decay: Adam L2 weight decay.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_epochs: Epochs = 30
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
    seeds: Seeds = (0, 1, 2)


VAL_BATCH_SIZE = 1024  # rows per validation batch (fixed; it does not change the metrics)


def num_classes(*tables: pa.Table) -> int:
    return int(max(int(pc.max(t.column("label")).as_py()) for t in tables)) + 1


# ----------------------------------------------------------------------------------------
# The packed-weights formats (the one owner): several seeds' state_dicts in one safetensors
# dict, keyed "<seed>.<param>"; several groups of those (pruned variants, ...) keyed
# "<group>/<seed>.<param>". A "seed" may also be a model index (the MIA shadow models).
# ----------------------------------------------------------------------------------------


def pack_seeds(per_seed: dict[int, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``{seed: state_dict}`` -> one flat dict keyed ``"<seed>.<param>"``."""
    return {f"{seed}.{k}": v for seed, sd in per_seed.items() for k, v in sd.items()}


def unpack_seeds(sd: dict[str, torch.Tensor]) -> dict[int, dict[str, torch.Tensor]]:
    """Inverse of :func:`pack_seeds`, sorted by seed."""
    out: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in sd.items():
        seed, _, name = key.partition(".")
        out.setdefault(int(seed), {})[name] = v
    return dict(sorted(out.items()))


def pack_groups(per_group: dict[str, dict[int, dict[str, torch.Tensor]]]) -> dict[str, torch.Tensor]:
    """``{group: {seed: state_dict}}`` -> one flat dict keyed ``"<group>/<seed>.<param>"``."""
    return {f"{group}/{k}": v for group, seeds in per_group.items() for k, v in pack_seeds(seeds).items()}


def unpack_groups(sd: dict[str, torch.Tensor]) -> dict[str, dict[int, dict[str, torch.Tensor]]]:
    """Inverse of :func:`pack_groups` (groups in file order, seeds sorted)."""
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, v in sd.items():
        group, _, rest = key.partition("/")
        grouped.setdefault(group, {})[rest] = v
    return {group: unpack_seeds(g) for group, g in grouped.items()}


def select_group(sd: dict[str, torch.Tensor], group: str, what: str = "weights") -> dict[str, torch.Tensor]:
    """The per-seed packed weights (``"<seed>.<param>"``) of one group of a :func:`pack_groups` dict."""
    groups = unpack_groups(sd)
    if group not in groups:
        raise ArtifactError(f"{what} has no group {group!r}; groups: {sorted(groups)}")
    return pack_seeds(groups[group])


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


@contextlib.contextmanager
def deterministic_algorithms():
    """``torch.use_deterministic_algorithms(True)`` and no cuDNN autotuning, then restore.

    The same switches as Lightning's ``Trainer(deterministic=True)`` (which left them on for
    the rest of the process); ``CUBLAS_WORKSPACE_CONFIG`` is set as Lightning sets it.
    """
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = before[2]


class _TrainingForward(nn.Module):
    """``forward(x) = outputs(model, x)``: what the loss sees during training, as one module.

    PLATFORM: Fabric (and DDP under it) hooks a module's ``forward``; a ``train_outputs`` that
    calls another method (``forward_heads``) goes through here, so it gets the same precision
    context and DDP gradient sync as ``model(x)`` would. Its state_dict keys gain a ``model.``
    prefix, but callers keep (and save) their own ``model``, which is unchanged.
    """

    def __init__(self, model: nn.Module, outputs: Callable[[nn.Module, torch.Tensor], object]):
        super().__init__()
        self.model = model
        self.outputs = outputs

    def forward(self, x: torch.Tensor):
        return self.outputs(self.model, x)


def _wrappers_are_identities(fabric: L.Fabric) -> bool:
    """One device in plain fp32: Fabric's module/optimiser/backward wrappers change nothing."""
    from lightning.fabric.plugins import Precision
    from lightning.fabric.strategies import SingleDeviceStrategy

    return type(fabric.strategy) is SingleDeviceStrategy and type(fabric.strategy.precision) is Precision


def fit(
    model: nn.Module,
    optim: OptimParams,
    train: pa.Table,
    val: pa.Table,
    seed: int,
    masks: dict[str, torch.Tensor] | None = None,
    loss_fn: LossFn = cross_entropy,
    train_outputs: Callable[[nn.Module, torch.Tensor], object] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place with Adam through Lightning Fabric; return the per-epoch history.

    Each epoch: one optimiser step per minibatch of a seeded shuffle of ``train``, on
    ``loss_fn(out, y, x)`` with ``out = train_outputs(model, x)`` (default ``model(x)``; e.g.
    both heads of a two-head student); then ``model`` in eval mode, without gradients, on
    the whole ``val`` split (each submodule's train/eval flag is restored afterwards).

    Args:
        masks: ``{parameter name: bool tensor}``; masked-out weights are zeroed before
            training and again after every optimiser step (Adam's moments and weight decay
            would move them), so a pruning mask is held fixed.

    Returns:
        One dict per epoch: ``epoch``, ``train_loss`` (batch-size-weighted mean of the
        step losses), ``val_loss`` and ``val_acc`` (omitted when ``val`` is empty).

    Deterministic on CPU for a given seed: the seed fixes the data order and any dropout.
    """
    # PLATFORM: Fabric owns devices, precision and DDP; the loop is ours. One CPU device in
    # fp32 here; Fabric(strategy="ddp", devices=N, num_nodes=M) is the multi-GPU switch
    # (docs/infra.md; not run here). Under DDP ``train_loss`` would be each rank's own mean,
    # every rank validates the whole val split, and a ``loss_fn``'s teachers are the
    # caller's to place on the device.
    # NOTE: imported here, not at the top: lightning pulls in torch._dynamo (~4 s), and every
    # paper module imports this one, so `python -m flows run`'s discovery would pay for it.
    import lightning as L

    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    params = dict(model.named_parameters())
    for name, mask in (masks or {}).items():
        if name not in params or params[name].shape != mask.shape:
            raise ValueError(f"mask {name!r} does not match a parameter of the model")
    xt, yt, _ = table_to_tensors(train)
    xv, yv, _ = table_to_tensors(val)
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(xt, yt), batch_size=optim.batch_size, shuffle=True, generator=g)
    # PLATFORM: the validation split is already one in-memory tensor; slicing it gives the
    # very batches a sequential DataLoader(batch_size=1024) would collate row by row (same
    # values, same order), without the per-sample indexing (~5 ms per epoch on CPU).
    # NOTE: a DataLoader (not the bare list) on purpose: each pass draws its base seed from
    # the global torch RNG, as the Lightning Trainer's validation did, so dropout in later
    # epochs sees the same random stream as before.
    val_loader = DataLoader(list(zip(xv.split(VAL_BATCH_SIZE), yv.split(VAL_BATCH_SIZE))), batch_size=None)
    L.seed_everything(seed, workers=True, verbose=False)
    fabric = L.Fabric(accelerator="cpu", devices=1, precision="32-true")
    fabric.launch()
    with deterministic_algorithms(), torch_threads():
        optimizer = torch.optim.Adam(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
        module = model if train_outputs is None else _TrainingForward(model, train_outputs)
        net, optimizer = fabric.setup(module, optimizer)
        # PLATFORM: on one device in fp32, Fabric's wrappers are identities (no cast, no
        # autocast, backward = loss.backward(), step = optimizer.step()); there we call what
        # they wrap and skip ~0.08 ms of wrapper calls per step (a small MLP's whole step is
        # ~1 ms on CPU; benchmarks/bench_distill.py). Elsewhere (DDP, mixed precision, GPU)
        # the Fabric objects. tests/distill/test_lit_fast_path.py: both give the same bits.
        if _wrappers_are_identities(fabric):
            forward, backward, step_optimizer = net.module, torch.Tensor.backward, optimizer.optimizer
        else:
            forward, backward, step_optimizer = net, fabric.backward, optimizer
        # NOTE: on one device the shuffle (``g``) is kept; under DDP Fabric swaps in a
        # DistributedSampler (each rank a shard). Batches are moved only off the CPU.
        on_device = fabric.device.type != "cpu"
        loader = fabric.setup_dataloaders(loader, move_to_device=on_device)
        val_loader = fabric.setup_dataloaders(val_loader, use_distributed_sampler=False, move_to_device=on_device)
        steps = len(loader)
        held = {name: (params[name], mask.to(params[name].device, params[name].dtype)) for name, mask in (masks or {}).items()}
        _hold(held)
        history = []
        for epoch in range(optim.max_epochs):
            loss_sum, n = torch.zeros((), device=fabric.device), 0
            # NOTE: exactly ``steps`` batches, then the iterator is dropped, not run to its end:
            # when the batch size divides the split, running it out would make the shuffle
            # draw once more from ``g`` and change every later epoch's order (the Lightning
            # Trainer stopped at ``len(loader)`` too).
            for _, (x, y) in zip(range(steps), loader):
                loss = loss_fn(forward(x), y, x)
                step_optimizer.zero_grad()
                backward(loss)
                step_optimizer.step()
                _hold(held)
                loss_sum.add_(loss.detach() * len(y))
                n += len(y)
            history.append({"epoch": float(epoch), "train_loss": float(loss_sum / max(n, 1)), **_validate(fabric, model, val_loader)})
            progress("epoch", epoch + 1, optim.max_epochs, **{k: v for k, v in history[-1].items() if k != "epoch"})
    return history


@torch.no_grad()
def _hold(held: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Zero the masked-out weights (``{name: (parameter, float mask)}``) in place."""
    for p, mask in held.values():
        p.mul_(mask)


@torch.no_grad()
def _validate(fabric: L.Fabric, model: nn.Module, batches: DataLoader) -> dict[str, float]:
    """Batch-size-weighted means of the cross-entropy and accuracy of ``model(x)`` (eval mode).

    NOTE: the arithmetic (0 + mean * B per batch, then / the summed B) is that of Lightning's
    ``self.log(on_epoch=True)``, which earlier versions used: the same floats.
    """
    modes = {name: m.training for name, m in model.named_modules()}
    model.eval()
    sums = {"val_loss": torch.zeros((), device=fabric.device), "val_acc": torch.zeros((), device=fabric.device)}
    n_val = torch.tensor(0)
    with fabric.autocast():
        for x, y in batches:
            logits = model(x)
            n = len(y)
            for key, value in (("val_loss", F.cross_entropy(logits, y)), ("val_acc", (logits.argmax(-1) == y).float().mean())):
                sums[key] = sums[key] + value * n
            n_val = n_val + n
    for name, m in model.named_modules():
        m.training = modes[name]
    return {k: float(v / n_val) for k, v in sums.items()} if int(n_val) else {}


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
    for i, seed in enumerate(params.seeds, 1):
        progress("seed", i, len(params.seeds), seed=seed)
        model = init_model(params.model, train, n_classes, seed)
        history = fit(model, params, train, val, seed)
        per_seed[seed] = {k: v.clone() for k, v in model.state_dict().items()}
        metrics[str(seed)] = {"val": accuracy_and_loss(model, val), "history": history}
    return {"weights": pack_seeds(per_seed), "metrics": {"num_classes": n_classes, "seeds": metrics}}


def head_classes(sd: dict[str, torch.Tensor], what: str) -> int:
    """Number of classes of a state_dict = rows of its ``head.weight``."""
    if "head.weight" not in sd:
        raise ArtifactError(f"{what}: no 'head.weight' in the weights (keys: {sorted(sd)[:6]}...)")
    return int(sd["head.weight"].shape[0])


def load_model(spec: ModelSpec, sd: dict[str, torch.Tensor], in_features: int, n_classes: int, what: str) -> nn.Module:
    """The model ``spec`` rebuilt from saved weights ``sd`` (strict: every key and shape must fit;
    ``what`` names the weights in the error). The one way a stage gets a model from a file."""
    model = build_model(spec, in_features, n_classes)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise ArtifactError(f"{what}: weights do not fit {spec.arch} {spec.hidden}: {e}") from e
    return model


def pick_seed(per_seed: dict[int, dict], seed: int, what: str) -> dict[str, torch.Tensor]:
    if seed not in per_seed:
        raise ArtifactError(f"{what} has seeds {sorted(per_seed)}, but seed {seed} is needed")
    return per_seed[seed]


def masks_from_zeros(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{name: w != 0}`` for every weight matrix that has exact zeros (a pruning mask)."""
    return {k: v != 0 for k, v in sd.items() if v.ndim == 2 and k.endswith("weight") and bool((v == 0).any())}


PREDICTIONS_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("seed", pa.int64()),
        ("id", pa.int64()),
        ("label", pa.int64()),
        ("pred", pa.int64()),
        ("correct", pa.bool_()),
        ("p_true", pa.float64()),
    ]
)


def evaluate_classifier(model: nn.Module, test: pa.Table, name: str, seed: int) -> tuple[dict[str, float], pa.Table]:
    """Accuracy, cross-entropy, and the item-level predictions of ``model`` on ``test``."""
    logits, y, ids = predict_logits(model, test)
    probs = torch.softmax(logits, -1)
    pred = logits.argmax(-1)
    metrics = {"acc": float((pred == y).float().mean()), "loss": float(F.cross_entropy(logits, y))}
    n = len(y)
    table = pa.Table.from_arrays(
        [
            pa.array([name] * n, pa.string()),
            pa.array(np.full(n, seed, dtype=np.int64)),
            pa.array(ids.numpy()),
            pa.array(y.numpy()),
            pa.array(pred.numpy().astype(np.int64)),
            pa.array((pred == y).numpy()),
            pa.array(probs.gather(1, y[:, None])[:, 0].double().numpy()),
        ],
        schema=PREDICTIONS_SCHEMA,
    )
    return metrics, table


def count_params(sd: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(total, non-zero) parameter counts of a state_dict."""
    total = sum(t.numel() for t in sd.values())
    nonzero = sum(int((t != 0).sum()) for t in sd.values())
    return total, nonzero
