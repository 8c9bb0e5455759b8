"""Magnitude N:M pruning with fixed-mask fine-tuning (seed: NM-SpMM, arXiv 2503.01253).

PAPER: NM-SpMM is a GPU kernel for N:M-sparse x dense matmul. Its accuracy side is the
standard recipe it assumes (NVIDIA ASP, Mishra et al. 2021, arXiv 2104.08378): along the
reduction dimension of every pruned layer, in each group of M consecutive weights keep the
N of largest magnitude, then fine-tune with the mask held fixed. ``v`` is NM-SpMM's vector
length: ``v`` consecutive output rows share one in-group pattern (``v = 1`` = per-row N:M).

Assumption: the classifier head is left dense by default (``layers: hidden``), as ASP and
most N:M work exclude the last layer; ``layers: all`` prunes it too (then every pattern's M
must divide its input width as well).

Assumption: the fine-tuning mask is the pruning mask (``weight != 0`` after pruning; a kept
weight that is exactly 0.0 has probability zero with float init and is treated as pruned).

Weights of many variants live in one safetensors file, keyed ``"<variant>/<seed>.<param>"``
with ``variant = "<n>:<m>_v<v>"``.
"""

from __future__ import annotations

import re
from typing import Literal

import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from kernels.nm import NMWeight, magnitude_mask, nm_matmul, validate_nm
from tasks.data_prep import num_features, table_to_tensors
from tasks.platform.params import SetOf
from tasks.train import (
    OptimParams,
    TrainParams,
    count_params,
    evaluate_classifier,
    fit,
    load_model,
    num_classes,
    pack_groups,
    torch_threads,
    unpack_groups,
    unpack_seeds,
)

# NOTE: fine-tuning (and nm_sparsity's KD recovery, tasks/papers/nm_sparsity.py) use seed
# + this offset for the data order, so it differs from training's but is shared by both.
FINETUNE_SEED_OFFSET = 10_000

PATTERN_RE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_pattern(text: str) -> tuple[int, int]:
    """``"2:4" -> (2, 4)``; raises ``ValueError`` naming the value unless the kernel accepts it.

    The rules (0 < N <= M, M <= 256) are the kernel's own, :func:`kernels.nm.validate_nm`,
    checked on the smallest weight the pattern admits, ``(1, M)``; a layer's width is checked
    against M by :func:`check_widths`, through the same validator.
    """
    match = PATTERN_RE.match(str(text))
    if not match:
        raise ValueError(f"N:M pattern {text!r} is not of the form 'N:M' (e.g. '2:4')")
    n, m = int(match[1]), int(match[2])
    try:
        validate_nm((1, max(m, 1)), n, m)
    except ValueError as e:
        raise ValueError(f"N:M pattern {text!r}: {e}") from None
    return n, m


def variant_name(n: int, m: int, v: int) -> str:
    return f"{n}:{m}_v{v}"


def parse_variant(name: str) -> tuple[int, int, int]:
    nm, v = name.split("_v")
    n, m = parse_pattern(nm)
    return n, m, int(v)


class PruneParams(BaseModel):
    """Params of the ``prune`` stage.

    Attributes:
        patterns: N:M patterns to prune to, as ``"N:M"`` strings (keep N of every M).
        vectors: vector sizes ``v`` (output rows sharing one pattern); 1 = per-row N:M.
        layers: ``hidden`` prunes every Linear but the classifier head; ``all`` prunes it too.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    patterns: SetOf[str] = Field(default=("2:4", "1:4", "2:8", "1:8"), min_length=1)
    vectors: SetOf[int] = Field(default=(1,), min_length=1)
    layers: Literal["hidden", "all"] = "hidden"

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for i, p in enumerate(v):
            try:
                parse_pattern(p)
            except ValueError as e:
                raise ValueError(f"patterns[{i}]: {e}") from None
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate patterns in {list(v)}")
        return v

    @field_validator("vectors")
    @classmethod
    def _vectors(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        for i, x in enumerate(v):
            try:
                validate_nm((1, 1), 1, 1, x)
            except ValueError as e:
                raise ValueError(f"vectors[{i}]: vector size {e}") from None
        return v

    def variants(self) -> list[tuple[int, int, int]]:
        return [(*parse_pattern(p), v) for p in self.patterns for v in self.vectors]


def pruned_layers(model: nn.Module, layers: str) -> list[str]:
    """Names of the ``nn.Linear`` modules to prune (in order)."""
    names = [n for n, mod in model.named_modules() if isinstance(mod, nn.Linear)]
    return names if layers == "all" else names[:-1]


def check_widths(params: PruneParams, linear_in: list[int], where: str) -> None:
    """Raise ``ValueError`` if some pattern's M does not divide a pruned layer's input width."""
    k = len(linear_in) if params.layers == "all" else len(linear_in) - 1
    for p in params.patterns:
        n, m = parse_pattern(p)
        for i, width in enumerate(linear_in[:k]):
            try:
                validate_nm((1, width), n, m)
            except ValueError as e:
                raise ValueError(
                    f"pattern {p!r}: M={m} does not divide the input width {width} of Linear "
                    f"layer {i} ({where}): {e}"
                ) from None


# ----------------------------------------------------------------------------------------
# PAPER: prune (magnitude N:M, optionally vector-wise) and fixed-mask fine-tuning
# ----------------------------------------------------------------------------------------


def prune(params: dict[str, BaseModel], *, dense: dict[str, torch.Tensor], train: pa.Table) -> dict[str, object]:
    """Magnitude-prune every seed's dense model to every (N:M, v) variant.

    Args:
        params: ``{"prune": PruneParams, "train": TrainParams}`` (the architecture comes from train).
        dense: packed dense weights (``tasks.train.pack_seeds``).
        train: the training split (only its width and classes are used, to rebuild the model).

    Returns:
        ``weights``: pruned state_dicts per variant and seed (``tasks.train.pack_groups``);
        ``compressed``: the pruned layers in compressed N:M form (``NMWeight.to_state_dict``),
        keyed ``"<variant>/<seed>.<layer>."``;
        ``metrics``: the measured density of every pruned layer (must equal N/M).
    """
    prune_p: PruneParams = params["prune"]
    train_p: TrainParams = params["train"]
    seeds = unpack_seeds(dense)
    n_classes = num_classes(train)
    per_variant: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    compressed: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    density: dict[str, float] = {}
    for n, m, v in prune_p.variants():
        var = variant_name(n, m, v)
        per_variant[var], compressed[var] = {}, {}
        for seed, sd in seeds.items():
            model = load_model(train_p.model, sd, num_features(train), n_classes, f"dense seed {seed}")
            new_sd = {k: t.clone() for k, t in sd.items()}
            compressed[var][seed] = {}
            for layer in pruned_layers(model, prune_p.layers):
                w = sd[f"{layer}.weight"]  # (out, in); groups run along in
                mask = magnitude_mask(w, n, m, v)
                new_sd[f"{layer}.weight"] = w * mask
                nmw = NMWeight.from_dense(w, mask, n=n, m=m, v=v)
                compressed[var][seed].update(nmw.to_state_dict(f"{layer}."))
                density[f"{var}.{seed}.{layer}"] = float(mask.float().mean())
            per_variant[var][seed] = new_sd
    return {"weights": pack_groups(per_variant), "compressed": pack_groups(compressed), "metrics": {"density": density}}


def finetune(
    params: dict[str, BaseModel], *, pruned: dict[str, torch.Tensor], train: pa.Table, val: pa.Table
) -> dict[str, object]:
    """Fine-tune every pruned variant and seed with its mask held fixed.

    Args:
        params: ``{"finetune": OptimParams, "train": TrainParams}``.
        pruned: output ``weights`` of :func:`prune`.

    Returns:
        ``weights`` (same keys as ``pruned``) and ``metrics`` (per variant/seed history).
    """
    ft: OptimParams = params["finetune"]
    train_p: TrainParams = params["train"]
    n_classes = num_classes(train, val)
    out: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    metrics: dict[str, object] = {}
    for var, seeds in unpack_groups(pruned).items():
        n, m, v = parse_variant(var)
        out[var] = {}
        for seed, sd in seeds.items():
            model = load_model(train_p.model, sd, num_features(train), n_classes, f"pruned {var} seed {seed}")
            masks = {
                name: (p != 0)
                for name, p in model.named_parameters()
                if name.endswith(".weight") and bool((p == 0).any())
            }
            # NOTE: seed offset keeps fine-tuning's data order distinct from training's.
            history = fit(model, ft, train, val, seed + FINETUNE_SEED_OFFSET, masks=masks)
            out[var][seed] = {k: t.clone() for k, t in model.state_dict().items()}
            metrics[f"{var}.{seed}"] = history[-1] if history else {}
    return {"weights": pack_groups(out), "metrics": {"final": metrics}}


RESULTS_SCHEMA = pa.schema(
    [
        ("model", pa.string()),  # "dense" | "<stage>/<variant>"
        ("stage", pa.string()),  # dense | pruned | finetuned
        ("pattern", pa.string()),  # "N:M" ("dense" for the dense model)
        ("v", pa.int64()),
        ("sparsity", pa.float64()),  # 1 - N/M of the pruned layers
        ("seed", pa.int64()),
        ("acc", pa.float64()),
        ("loss", pa.float64()),
        ("params_total", pa.int64()),
        ("params_nonzero", pa.int64()),
        ("weight_bytes", pa.int64()),  # fp32 dense bytes, or compressed N:M + dense rest
        ("matmul_max_abs_err", pa.float64()),  # compressed reference matmul vs dense-with-zeros
    ]
)


@torch.no_grad()
@torch_threads()  # small models: one thread (see tasks.train.torch_threads)
def evaluate(
    params: TrainParams,
    *,
    dense: dict[str, torch.Tensor],
    pruned: dict[str, torch.Tensor],
    finetuned: dict[str, torch.Tensor],
    compressed: dict[str, torch.Tensor],
    test: pa.Table,
) -> dict[str, object]:
    """Test accuracy/loss, parameter and byte counts of dense, pruned and fine-tuned models.

    Also checks the compressed N:M export: for every pruned layer, the reference
    ``nm_matmul`` on the test inputs of that layer's width against dense matmul with zeros.

    Returns:
        ``results`` (``RESULTS_SCHEMA``), ``predictions`` (item level, see tasks.train.evaluate_classifier).
    """

    n_classes = num_classes(test)
    x_test, _, _ = table_to_tensors(test)
    rows, preds = [], []

    def add(model_name, stage, pattern, v, sparsity, seed, sd, nbytes, err):
        model = load_model(params.model, sd, num_features(test), n_classes, model_name)
        metrics, table = evaluate_classifier(model, test, model_name, seed)
        total, nonzero = count_params(sd)
        rows.append(
            dict(model=model_name, stage=stage, pattern=pattern, v=v, sparsity=sparsity, seed=seed,
                 acc=metrics["acc"], loss=metrics["loss"], params_total=total, params_nonzero=nonzero,
                 weight_bytes=nbytes, matmul_max_abs_err=err)
        )
        preds.append(table)

    for seed, sd in unpack_seeds(dense).items():
        nbytes = sum(t.numel() * t.element_size() for t in sd.values())
        add("dense", "dense", "dense", 1, 0.0, seed, sd, nbytes, 0.0)
    packed_nm = unpack_groups(compressed)  # {variant: {seed: {"<layer>.<field>": tensor}}}
    for stage, packed in (("pruned", pruned), ("finetuned", finetuned)):
        for var, seeds in unpack_groups(packed).items():
            n, m, v = parse_variant(var)
            for seed, sd in seeds.items():
                comp = packed_nm.get(var, {}).get(seed, {})
                layers = sorted({k.rsplit(".", 1)[0] for k in comp})
                if not layers:
                    raise ValueError(f"no compressed layers for {var}, seed {seed} in the prune output")
                nbytes, err = 0, 0.0
                for name, t in sd.items():
                    layer = name.rsplit(".", 1)[0]
                    if name.endswith(".weight") and layer in layers:
                        nmw = NMWeight.from_dense(t, t != 0, n=n, m=m, v=v) if stage == "finetuned" else (
                            NMWeight.from_state_dict(comp, f"{layer}."))
                        nbytes += nmw.nbytes
                        x = torch.randn(64, t.shape[1], generator=torch.Generator().manual_seed(seed))
                        if t.shape[1] == x_test.shape[1]:
                            x = x_test[:64]
                        err = max(err, float((nm_matmul(nmw, x, impl="reference") - x @ t.T).abs().max()))
                    else:
                        nbytes += t.numel() * t.element_size()
                add(f"{stage}/{var}", stage, f"{n}:{m}", v, 1 - n / m, seed, sd, nbytes, err)
    results = pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA)
    return {"results": results, "predictions": pa.concat_tables(preds)}


def pick_variants(available, patterns: tuple[str, ...] | None, vectors: tuple[int, ...], what: str) -> list[str]:
    """The variants (``"<n>:<m>_v<v>"``) of ``available`` with v in ``vectors`` (and pattern in
    ``patterns`` unless ``None``), in the prune stage's order; raises if none is left."""
    want = None if patterns is None else {parse_pattern(p) for p in patterns}
    out = []
    for var in available:
        n, m, v = parse_variant(var)
        if v in vectors and (want is None or (n, m) in want):
            out.append(var)
    if not out:
        raise ValueError(f"{what}: no variant of {sorted(available)} matches patterns={patterns}, vectors={list(vectors)}")
    return out
