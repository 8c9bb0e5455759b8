"""Serve a quantized tinylm through the real low-bit kernels: decode latency per token, model bytes and
bits/char next to the fp32 model, and parity with the fake-quantized model (issue #19).

Each seed's trained tinylm is quantized weight-only (:func:`tasks.quant.tinylm.quantize_weights`, RTN or
GPTQ, the stage's ``weight`` format); every decoder linear becomes a :class:`~models.quant_linear.QuantLinear`
holding the packed codes (:meth:`tasks.quant.fakequant.Quantized.to_kernel`, fp32 scales, so it computes
exactly the fake-quantized weight) and is multiplied by :func:`kernels.quant.quant_matmul`. The embedding
and ``lm_head`` stay fp32, as in the quantization stages.

Decoding is greedy with a KV cache (:class:`models.tinylm.KVCache`): a prompt of ``prompt_len``
characters, then ``new_tokens`` steps of one character per sequence, so every linear sees ``batch`` rows
per step (the batch-1..64 regime the native kernel is built for).

Assumptions (ours; the papers report no CPU serving numbers):

* Latency per token = median over ``repeats`` of one whole ``generate`` call (prefill + ``new_tokens``
  steps) divided by ``new_tokens``; the fp32 and the quantized model alternate repeat by repeat
  (:func:`tasks.evaluation.latency.median_ms`). Characters per second = ``batch * new_tokens`` / that
  median. It is a measurement of the machine that runs the stage, load included.
* Bytes: what a forward reads for the weights (:func:`models.quant_linear.weight_nbytes`; codes + scales
  [+ zeros] for quantized linears, storage for the rest) vs the fp32 model's parameters; the linear-only
  ratio is reported too (the embedding and ``lm_head`` are not quantized and dominate a model this small).
* Parity: teacher-forced decoding of test passages through the cache (the kernel at ``batch`` rows per
  step), logits of the kernel model vs the fake-quantized model (the same weights as a dense fp32
  matmul); ``logit_atol`` bounds fp32 summation-order differences between the C kernel and BLAS.
"""

from __future__ import annotations

import math
from typing import Literal

import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor, nn

from kernels.quant import check_impl_name, select_impl
from models.quant_linear import weight_nbytes
from models.tinylm import TinyLMSpec
from tasks.evaluation.latency import median_ms, state_bytes
from tasks.evaluation.seeds import mean_ci
from tasks.platform.params import SetOf
from tasks.platform.stage import Stage
from tasks.quant.fakequant import WeightQuant
from tasks.quant.tinylm import FakeQuantLinear, bits_per_char, load_tinylm, quantize_weights, split_tokens, swap_linears
from tasks.train import torch_threads, unpack_seeds


class ServeQuantParams(BaseModel):
    """The ``serve`` stage of a tinylm quantization paper.

    Attributes:
        weight: weight-only format served (4 or 8 bits; the kernels' formats).
        method: ``rtn`` or ``gptq`` codes.
        batch_sizes: sequences decoded at once (each <= the number of test passages).
        prompt_len: prompt characters (taken from test passages); new_tokens: greedy steps timed.
        repeats: timed generate calls per model and batch size (median reported).
        n_calib: calibration passages for GPTQ (train split).
        logit_atol: parity tolerance on |logits(kernel) - logits(fake-quant)|.
        impl: ``quant_matmul`` impl (``auto``: the fastest available).
        threads: torch / kernel threads.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: WeightQuant = WeightQuant(bits=4, group=32)
    method: Literal["rtn", "gptq"] = "rtn"
    batch_sizes: SetOf[int] = Field(default=(1, 16), min_length=1)
    prompt_len: int = Field(default=16, ge=1)
    new_tokens: int = Field(default=64, ge=1)
    repeats: int = Field(default=9, ge=1)
    n_calib: int = Field(default=32, ge=1)
    logit_atol: float = Field(default=1e-3, gt=0)
    impl: str = "auto"
    threads: int | None = Field(default=1, ge=1)

    @field_validator("weight")
    @classmethod
    def _kernel_bits(cls, v: WeightQuant) -> WeightQuant:
        if v.bits not in (4, 8):
            raise ValueError(f"bits={v.bits}: the low-bit kernels serve 4 or 8 bits")
        return v

    @field_validator("batch_sizes")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if min(v) < 1:
            raise ValueError(f"batch sizes must be >= 1, got {v}")
        return v

    @field_validator("impl")
    @classmethod
    def _registered(cls, v: str) -> str:
        return check_impl_name(v)


SERVE_QUANT_SCHEMA = pa.schema([
    ("seed", pa.int64()),
    ("batch", pa.int64()),
    ("impl", pa.string()),  # quant_matmul impl chosen for a decode step's linears at this batch
    ("fp32_ms_per_token", pa.float64()),
    ("quant_ms_per_token", pa.float64()),
    ("speedup", pa.float64()),  # fp32 / quant
    ("fp32_chars_per_s", pa.float64()),
    ("quant_chars_per_s", pa.float64()),
    ("fp32_bytes", pa.int64()),  # every parameter, fp32
    ("quant_bytes", pa.int64()),  # quantized linears' codes + scales (+ zeros), the rest fp32
    ("fp32_linear_bytes", pa.int64()),
    ("quant_linear_bytes", pa.int64()),
    ("fp32_bpc", pa.float64()),
    ("fakequant_bpc", pa.float64()),
    ("quant_bpc", pa.float64()),
    ("max_abs_logit_diff", pa.float64()),  # kernel vs fake-quant, teacher-forced decode at this batch
    ("parity_ok", pa.bool_()),
    ("same_generation", pa.float64()),  # share of generated characters equal to the fake-quant model's
])


@torch.no_grad()
def generate(model: nn.Module, prompt: Tensor, new_tokens: int) -> Tensor:
    """Greedy decoding with a KV cache: ``prompt`` (B, P) int64 -> the ``new_tokens`` next tokens (B, new)."""
    cache = model.new_cache()
    logits = model(prompt, cache)  # (B, P, V), prefill
    out = []
    for _ in range(new_tokens):
        nxt = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
        out.append(nxt)
        if len(out) < new_tokens:
            logits = model(nxt, cache)
    return torch.cat(out, 1)


@torch.no_grad()
def decode_logits(model: nn.Module, tokens: Tensor) -> Tensor:
    """Teacher-forced incremental decoding: ``tokens`` (B, T) fed one per step through the cache -> (B, T, V)."""
    cache = model.new_cache()
    return torch.cat([model(tokens[:, t : t + 1], cache) for t in range(tokens.shape[1])], 1)


def _linear_bytes(model: nn.Module, names: list[str]) -> int:
    return sum(weight_nbytes(model.get_submodule(n)) for n in names)


@torch.no_grad()
def serve_tinylm(params: ServeQuantParams, *, weights: dict[str, Tensor], train_metrics: dict,
                 passages: pa.Table) -> dict[str, object]:
    """Stage core: every seed's tinylm served fp32 vs through the low-bit kernels.

    Args:
        params: :class:`ServeQuantParams`.
        weights: the train stage's ``weights`` (``"<seed>.<HF name>"``); train_metrics: its metrics (``spec``).
        passages: the prepare stage's passages (``test`` prompts and bits/char, ``train`` calibration).

    Returns:
        ``results`` (:data:`SERVE_QUANT_SCHEMA`, one row per seed x batch size) and ``metrics``
        (:func:`summarize_quant_serving`).

    Raises:
        ValueError: a batch size above the number of test passages, or prompt + new tokens beyond
            the model's ``max_len``.
    """
    spec = TinyLMSpec(**train_metrics["spec"])
    test, train = split_tokens(passages, "test"), split_tokens(passages, "train")
    if max(params.batch_sizes) > len(test):
        raise ValueError(f"serve.batch_sizes: {max(params.batch_sizes)} > {len(test)} test passages")
    if params.prompt_len + params.new_tokens > min(spec.max_len, test.shape[1]):
        raise ValueError(f"serve: prompt_len + new_tokens = {params.prompt_len + params.new_tokens} > "
                         f"min(max_len, passage length) = {min(spec.max_len, test.shape[1])}")
    rows = []
    with torch_threads(params.threads):
        for seed, sd in unpack_seeds(weights).items():
            fp32 = load_tinylm(spec, sd, f"weights seed {seed}")
            names = fp32.linear_names()
            q = quantize_weights(fp32, train[: params.n_calib], params.weight, params.method)
            fake = swap_linears(fp32, {n: FakeQuantLinear(q[n].dequant) for n in names}).eval()
            kern = {n: q[n].to_kernel() for n in names}
            for layer in kern.values():
                layer.impl = params.impl
            served = swap_linears(fp32, kern).eval()
            bpc = {k: bits_per_char(m, test) for k, m in (("fp32", fp32), ("fake", fake), ("quant", served))}
            sizes = dict(fp32_bytes=state_bytes(fp32), quant_bytes=weight_nbytes(served),
                         fp32_linear_bytes=_linear_bytes(fp32, names), quant_linear_bytes=_linear_bytes(served, names))
            for batch in params.batch_sizes:
                prompts = test[:batch, : params.prompt_len]  # (B, P)
                forced = test[:batch, : params.prompt_len + params.new_tokens]
                diff = float((decode_logits(served, forced) - decode_logits(fake, forced)).abs().max())
                same = float((generate(served, prompts, params.new_tokens)
                              == generate(fake, prompts, params.new_tokens)).float().mean())
                t = median_ms({"fp32": lambda p, m=fp32: generate(m, p, params.new_tokens),
                               "quant": lambda p, m=served: generate(m, p, params.new_tokens)},
                              prompts, params.repeats)
                chars = batch * params.new_tokens
                first = kern[names[0]]
                impl = select_impl(first.weight(), torch.zeros(batch, first.in_features), params.impl).name
                rows.append(dict(
                    seed=seed, batch=batch, impl=impl, fp32_ms_per_token=t["fp32"] / params.new_tokens,
                    quant_ms_per_token=t["quant"] / params.new_tokens, speedup=t["fp32"] / t["quant"],
                    fp32_chars_per_s=chars / t["fp32"] * 1e3, quant_chars_per_s=chars / t["quant"] * 1e3,
                    **sizes, fp32_bpc=bpc["fp32"], fakequant_bpc=bpc["fake"], quant_bpc=bpc["quant"],
                    max_abs_logit_diff=diff, parity_ok=diff <= params.logit_atol, same_generation=same,
                ))
    return {"results": pa.Table.from_pylist(rows, schema=SERVE_QUANT_SCHEMA),
            "metrics": summarize_quant_serving(rows, params)}


def summarize_quant_serving(rows: list[dict], params: ServeQuantParams) -> dict[str, object]:
    """Per batch size: speedup and characters/s (mean over seeds with a 95 % bootstrap CI); bytes ratios;
    bits/char of each model; worst parity gap against ``logit_atol``."""
    out: dict[str, object] = {
        "weight_bits": params.weight.bits, "weight_group": params.weight.group or 0,
        "method": params.method, "logit_atol": params.logit_atol,
        "parity_ok": all(r["parity_ok"] for r in rows),
        "max_abs_logit_diff": max(r["max_abs_logit_diff"] for r in rows),
        "same_generation_min": min(r["same_generation"] for r in rows),
        "bytes_ratio": rows[0]["fp32_bytes"] / rows[0]["quant_bytes"],
        "linear_bytes_ratio": rows[0]["fp32_linear_bytes"] / rows[0]["quant_linear_bytes"],
        "batches": {},
    }
    one_per_seed = list({r["seed"]: r for r in rows}.values())
    for key in ("fp32_bpc", "fakequant_bpc", "quant_bpc"):
        out[key] = mean_ci([r[key] for r in one_per_seed])[0]
    for batch in sorted({r["batch"] for r in rows}):
        rs = [r for r in rows if r["batch"] == batch]
        entry = {}
        for key in ("speedup", "fp32_chars_per_s", "quant_chars_per_s", "fp32_ms_per_token", "quant_ms_per_token"):
            mean, lo, hi = mean_ci([r[key] for r in rs])
            entry[key] = {"mean": mean} if math.isnan(lo) else {"mean": mean, "lo": lo, "hi": hi}  # one seed: no CI
        out["batches"][str(batch)] = entry
    return out


def serve_stage() -> Stage:
    """The ``serve`` stage as a tinylm paper declares it (after ``prepare`` and ``train``; params section ``serve``)."""
    return Stage("serve", serve_tinylm, params=("serve",),
                 inputs={"weights": "train.weights", "train_metrics": "train.metrics", "passages": "prepare.passages"},
                 outputs={"results": "serving.parquet", "metrics": "metrics.json"},
                 schemas={"results": SERVE_QUANT_SCHEMA})
