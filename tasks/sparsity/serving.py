"""Serve N:M-pruned classifiers through ``NMLinear``: latency and weight memory against the dense
model, and accuracy at v = 1 vs v = 32 (the price of NM-SpMM's vector-wise layout).

PAPER: NM-SpMM (arXiv 2503.01253) stores an N:M weight as kept values plus one in-group index per
kept position per block of ``v = 32`` output rows, and multiplies it without decompressing (Sec. III).
Here every fine-tuned variant from ``nm_magnitude.finetune`` is converted layer by layer
(``models.nm_linear.sparsify_model``, strict: no non-zero weight may be dropped) and served with
``kernels.nm.nm_matmul``; its logits must equal the masked dense model's.

Assumption: latency is wall-clock median over ``repeats`` interleaved forward passes (dense and N:M
alternate), for each batch size, on whatever CPU runs the stage; it is a measurement of this machine
(load included), not a property of the method, so the report reads it next to ``make bench-kernels``.
Assumption: "memory" is the bytes of the served state_dict (values + packed indices + bias + the
layers left dense), not process RSS.
"""

from __future__ import annotations

import statistics

import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kernels.nm import check_impl_name, select_impl
from models.nm_linear import NMLinear, sparsify_model
from tasks.data_prep import num_features, table_to_tensors
from tasks.evaluation.latency import median_ms, state_bytes
from tasks.sparsity.nm import PruneParams, parse_variant, pruned_layers, unpack_groups
from tasks.train import TrainParams, load_model, num_classes
from tasks.platform.params import SetOf


class ServeParams(BaseModel):
    """Params of the ``serve`` stage.

    Attributes:
        batch_sizes: batch sizes to time (0 = the whole test split).
        repeats: timed forward passes per model and batch size (median reported).
        impl: ``nm_matmul`` impl for the N:M model (``auto`` picks the fastest available).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_sizes: SetOf[int] = Field(default=(1, 64, 0), min_length=1)
    repeats: int = Field(default=20, ge=1)
    impl: str = "auto"

    @field_validator("impl")
    @classmethod
    def _registered(cls, v: str) -> str:
        return check_impl_name(v)


SERVE_SCHEMA = pa.schema(
    [
        ("model", pa.string()),  # "<n>:<m>_v<v>"
        ("pattern", pa.string()),
        ("v", pa.int64()),
        ("sparsity", pa.float64()),
        ("seed", pa.int64()),
        ("batch", pa.int64()),
        ("impl", pa.string()),  # nm_matmul impl chosen for the first N:M layer at this batch
        ("dense_ms", pa.float64()),
        ("nm_ms", pa.float64()),
        ("speedup", pa.float64()),  # dense_ms / nm_ms
        ("dense_bytes", pa.int64()),
        ("nm_bytes", pa.int64()),
        ("acc_masked_dense", pa.float64()),  # the fine-tuned weights run as a dense Linear
        ("acc_nm", pa.float64()),  # the same weights served compressed through NMLinear
        ("max_abs_logit_diff", pa.float64()),
    ]
)


@torch.no_grad()
def serve(params: dict[str, BaseModel], *, finetuned: dict[str, torch.Tensor],
          test: pa.Table) -> dict[str, object]:
    """Latency, memory and accuracy of every fine-tuned variant served through ``NMLinear``.

    Args:
        params: ``{"prune": PruneParams, "train": TrainParams}`` and optionally ``"serve"``
            (:class:`ServeParams`; defaults when absent).
        finetuned: output ``weights`` of ``nm_magnitude.finetune`` (keys ``"<variant>/<seed>.<param>"``).
        test: the test split (``id``, ``label``, ``x``).

    Returns:
        ``results`` (:data:`SERVE_SCHEMA`, one row per variant x seed x batch size) and ``metrics``:
        per variant the mean speedup per batch size, the bytes ratio, the accuracies, and per pattern
        the accuracy at v = 1 vs v = 32 when both were pruned.
    """
    prune_p: PruneParams = params["prune"]
    train_p: TrainParams = params["train"]
    serve_p: ServeParams = params.get("serve") or ServeParams()
    x_test, y_test, _ = table_to_tensors(test)  # (N, d) float32, (N,) int64
    n_classes = num_classes(test)
    rows = []
    for var, seeds in unpack_groups(finetuned).items():
        n, m, v = parse_variant(var)
        for seed, sd in seeds.items():
            dense = load_model(train_p.model, sd, num_features(test), n_classes, f"finetuned {var} seed {seed}")
            dense.eval()
            chosen = set(pruned_layers(dense, prune_p.layers))
            served = sparsify_model(dense, n, m, v, include=lambda name, _lin: name in chosen,
                                    impl=serve_p.impl, strict=True)
            served.eval()
            logits_dense, logits_nm = dense(x_test), served(x_test)
            diff = float((logits_dense - logits_nm).abs().max())
            acc_dense = float((logits_dense.argmax(-1) == y_test).float().mean())
            acc_nm = float((logits_nm.argmax(-1) == y_test).float().mean())
            first = next(mod for mod in served.modules() if isinstance(mod, NMLinear))
            for batch in serve_p.batch_sizes:
                xb = x_test if batch == 0 else x_test[:batch].repeat(-(-batch // len(x_test)), 1)[:batch]
                probe = torch.zeros(xb.shape[0], first.in_features)
                impl = select_impl(first.nm_weight(), probe, serve_p.impl).name
                t = median_ms({"dense": dense, "nm": served}, xb, serve_p.repeats)
                rows.append(dict(
                    model=var, pattern=f"{n}:{m}", v=v, sparsity=1 - n / m, seed=seed,
                    batch=int(xb.shape[0]), impl=impl, dense_ms=t["dense"], nm_ms=t["nm"],
                    speedup=t["dense"] / t["nm"], dense_bytes=state_bytes(dense),
                    nm_bytes=state_bytes(served), acc_masked_dense=acc_dense, acc_nm=acc_nm,
                    max_abs_logit_diff=diff,
                ))
    results = pa.Table.from_pylist(rows, schema=SERVE_SCHEMA)
    return {"results": results, "metrics": summarize_serving(rows)}


def summarize_serving(rows: list[dict]) -> dict[str, object]:
    """Means over seeds per variant, and the v = 1 vs v = 32 accuracy comparison per pattern."""
    per_variant: dict[str, dict] = {}
    for r in rows:
        d = per_variant.setdefault(r["model"], {"pattern": r["pattern"], "v": r["v"], "rows": []})
        d["rows"].append(r)
    out: dict[str, object] = {"variants": {}, "v1_vs_v32": {}}
    for var, d in per_variant.items():
        rs = d["rows"]
        batches = sorted({r["batch"] for r in rs})
        one_per_seed = {r["seed"]: r for r in rs}.values()
        out["variants"][var] = {
            "acc_nm_mean": statistics.fmean(r["acc_nm"] for r in one_per_seed),
            "acc_masked_dense_mean": statistics.fmean(r["acc_masked_dense"] for r in one_per_seed),
            "max_abs_logit_diff": max(r["max_abs_logit_diff"] for r in rs),
            "bytes_ratio": rs[0]["dense_bytes"] / rs[0]["nm_bytes"],
            "speedup_median": {str(b): statistics.median(r["speedup"] for r in rs if r["batch"] == b)
                               for b in batches},
        }
    for var, d in per_variant.items():
        if d["v"] != 1:
            continue
        other = next((w for w, e in per_variant.items() if e["pattern"] == d["pattern"] and e["v"] == 32), None)
        if other is not None:
            a1 = out["variants"][var]["acc_nm_mean"]
            a32 = out["variants"][other]["acc_nm_mean"]
            out["v1_vs_v32"][d["pattern"]] = {"acc_v1": a1, "acc_v32": a32, "gap_pts": 100 * (a1 - a32)}
    return out
