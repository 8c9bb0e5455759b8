"""tinylm in the pipeline: training, held-out bits/char, calibration inputs, outlier statistics and
running a model with fake-quantized linears (RTN / GPTQ, optional low-rank adapters, quantized inputs).

The corpus is a passages table (``split``, ``text``) built by :func:`prepare_corpus` (every quantization
paper's prepare stage) from the text corpus the project already builds (:func:`tasks.data_prep.corpus_text`).
"""

from __future__ import annotations

import copy
import multiprocessing
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

import numpy as np
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from torch.nn import functional as F

from models.charlm import encode
from models.tinylm import TinyLM, TinyLMSpec
from tasks.data_prep import corpus_text
from tasks.platform.errors import ArtifactError
from tasks.platform.stage import EXECUTION_ONLY, Stage
from tasks.quant.fakequant import Quantized, WeightQuant, gptq, hessian, quant_act, rtn
from tasks.train import pack_seeds, torch_threads

T = TypeVar("T")

PASSAGES_SCHEMA = pa.schema([("split", pa.string()), ("text", pa.string())])


class CorpusParams(BaseModel):
    """Passages of a character corpus.

    Attributes:
        passage_len: characters per passage (the model sees ``passage_len - 1`` inputs).
        n_val, n_test: held-out passages; every remaining passage trains (capped by ``max_train``).
        max_train: cap on training passages (None: all).
        seed: passage order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    passage_len: int = Field(default=129, ge=8)
    n_val: int = Field(default=100, ge=1)
    n_test: int = Field(default=300, ge=1)
    max_train: int | None = Field(default=None, ge=1)
    seed: int = 0


def make_passages(params: CorpusParams, text: str) -> pa.Table:
    """Non-overlapping ``passage_len``-character passages of ``text`` in a seeded order, split into
    disjoint test / val / train rows (``split``, ``text``)."""
    n = len(text) // params.passage_len
    if n <= params.n_val + params.n_test:
        raise ValueError(f"corpus has {n} passages of {params.passage_len} chars; need more than "
                         f"n_val + n_test = {params.n_val + params.n_test}")
    order = np.random.default_rng(params.seed).permutation(n)
    ps = [text[i * params.passage_len : (i + 1) * params.passage_len] for i in order]
    test, val, train = ps[: params.n_test], ps[params.n_test : params.n_test + params.n_val], ps[params.n_test + params.n_val :]
    train = train[: params.max_train] if params.max_train else train
    rows = [("test", t) for t in test] + [("val", t) for t in val] + [("train", t) for t in train]
    return pa.Table.from_pylist([{"split": s, "text": t} for s, t in rows], schema=PASSAGES_SCHEMA)


def prepare_corpus(params: CorpusParams) -> dict[str, object]:
    """Stage core (every quantization paper's ``prepare``): the ``passages`` table of the project's
    stdlib-docs character corpus (:func:`make_passages`)."""
    return {"passages": make_passages(params, corpus_text())}


class TinyLMTrainParams(BaseModel):
    """Training of the tinylm seeds.

    Attributes:
        model: architecture.
        seeds: one model per seed.
        steps: AdamW steps; warmup: linear warmup steps, then cosine decay to 10 %.
        batch_size: passages per step; lr, weight_decay: AdamW.
        threads: torch intra-op threads (None: $REPROLAB_TORCH_THREADS or 1).
        workers: seeds trained at once, each in its own process with ``threads`` threads (1: one after the
            other in this process). A seed's weights do not depend on it (same seed, same ops, one process
            per seed); it divides the wall time of the full profile by up to the number of cores.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: TinyLMSpec = TinyLMSpec()
    seeds: tuple[int, ...] = Field(default=(0, 1, 2), min_length=1)
    steps: int = Field(default=600, ge=1)
    warmup: int = Field(default=30, ge=0)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    threads: int | None = Field(default=None, ge=1)
    workers: int = Field(default=1, ge=1, json_schema_extra=EXECUTION_ONLY)


def check_widths(spec: TinyLMSpec, fmt: WeightQuant, ranks: tuple[int, ...] = ()) -> None:
    """Fail before any work when the weight format's group does not divide a linear's input width
    (``d_model`` or ``d_ff``) or a rank exceeds the smallest layer width; the error names the value."""
    for width, what in ((spec.d_model, "d_model"), (spec.d_ff, "d_ff")):
        fmt.group_for(width, f"{what} linears")
    if ranks and max(ranks) > min(spec.d_model, spec.d_ff):
        raise ValueError(f"rank {max(ranks)} > the smallest linear width {min(spec.d_model, spec.d_ff)}")


def split_tokens(passages: pa.Table, split: str) -> Tensor:
    """(N, T) int64 tokens of one split of the passages table (equal-length passages)."""
    texts = [t for s, t in zip(passages["split"].to_pylist(), passages["text"].to_pylist()) if s == split]
    if not texts:
        raise ArtifactError(f"passages: no rows of split {split!r}")
    if len({len(t) for t in texts}) != 1:
        raise ArtifactError(f"passages: split {split!r} has passages of different lengths")
    return torch.stack([encode(t) for t in texts])


@torch.no_grad()
def bits_per_char(model: nn.Module, tokens: Tensor, batch: int = 64) -> float:
    """Mean next-character cross-entropy in bits over every predicted position of ``tokens`` (N, T)."""
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(tokens), batch):
        b = tokens[i : i + batch]
        logits = model(b[:, :-1])
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b[:, 1:].reshape(-1), reduction="sum"))
        n += b[:, 1:].numel()
    return total / n / math.log(2)


def fit_tinylm(params: TinyLMTrainParams, train: Tensor, seed: int,
               init: TinyLM | None = None) -> tuple[TinyLM, list[float]]:
    """One seed: AdamW with warmup + cosine on random batches of whole passages; returns (model, loss curve).
    With ``init``, a copy of that model is trained instead of a fresh one (fine-tuning; ``init`` is untouched)."""
    if train.shape[1] - 1 > params.model.max_len:
        raise ValueError(f"passage length {train.shape[1]} exceeds model.max_len + 1 = {params.model.max_len + 1}")
    torch.manual_seed(seed)
    model = TinyLM(params.model) if init is None else copy.deepcopy(init)
    decay = [p for p in model.parameters() if p.dim() == 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": params.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=params.lr, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:
        if step < params.warmup:
            return (step + 1) / params.warmup
        frac = (step - params.warmup) / max(1, params.steps - params.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    g = torch.Generator().manual_seed(seed)
    curve = []
    model.train()
    for step in range(params.steps):
        b = train[torch.randint(0, len(train), (params.batch_size,), generator=g)]
        logits = model(b[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == params.steps - 1:
            curve.append(float(loss.detach()) / math.log(2))
    model.eval()
    return model, curve


def _train_seed(params: TinyLMTrainParams, splits: tuple[Tensor, Tensor, Tensor], seed: int) -> tuple[dict, dict]:
    """One seed of :func:`train_tinylm` (a process-pool job): its state dict and metrics."""
    train, val, test = splits
    with torch_threads(params.threads):
        t0 = time.perf_counter()
        model, curve = fit_tinylm(params, train, seed)
        secs = time.perf_counter() - t0
        return ({k: v.detach().clone() for k, v in model.state_dict().items()},
                {"val_bpc": bits_per_char(model, val), "test_bpc": bits_per_char(model, test), "train_s": secs,
                 "curve_bpc": curve})


def map_seeds(fn: Callable[..., T], calls: Sequence[tuple], workers: int) -> list[T]:
    """``[fn(*args) for args in calls]``, in order: in this process when ``workers`` is 1 (or one call), else in
    ``min(workers, len(calls))`` spawned processes (spawn, not fork: a forked child would inherit this process's
    torch/OpenMP thread state). ``fn`` must be a module-level function and every argument picklable; each call sets
    its own torch threads, so a seed's result does not depend on where it ran (tested per stage that uses it)."""
    workers = min(workers, len(calls))
    if workers <= 1:
        return [fn(*args) for args in calls]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(fn, *zip(*calls)))


def train_tinylm(params: TinyLMTrainParams, *, passages: pa.Table) -> dict[str, object]:
    """Stage core: train one tinylm per seed on the ``train`` split; bits/char on ``val`` and ``test``.

    Returns ``weights`` (``"<seed>.<HF name>"``) and ``metrics`` (per seed: val/test bits/char, train
    seconds, loss curve in bits; plus the parameter count and the spec).
    """
    splits = tuple(split_tokens(passages, s) for s in ("train", "val", "test"))
    done = map_seeds(_train_seed, [(params, splits, seed) for seed in params.seeds], params.workers)
    per_seed = {seed: sd for seed, (sd, _) in zip(params.seeds, done)}
    metrics = {str(seed): m for seed, (_, m) in zip(params.seeds, done)}
    n_params = sum(v.numel() for v in per_seed[params.seeds[0]].values())
    return {"weights": pack_seeds(per_seed),
            "metrics": {"seeds": metrics, "n_params": n_params, "spec": params.model.model_dump(),
                        "train_s_mean": float(np.mean([m["train_s"] for m in metrics.values()])),
                        "test_bpc_mean": float(np.mean([m["test_bpc"] for m in metrics.values()]))}}


def load_tinylm(spec: TinyLMSpec, sd: dict[str, Tensor], what: str) -> TinyLM:
    """A TinyLM from a state dict (strict; the error names ``what``)."""
    model = TinyLM(spec)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        raise ArtifactError(f"{what}: weights do not match the tinylm spec {spec.model_dump()}: {err}") from None
    return model.eval()


# ---------------------------------------------------------------------------------------
# calibration inputs and outlier statistics
# ---------------------------------------------------------------------------------------


def linear_layers(model: nn.Module, names: list[str]) -> dict[str, nn.Module]:
    """``{name: module}``; raises ValueError naming the first missing layer (e.g. a model of another architecture)."""
    mods = dict(model.named_modules())
    missing = [n for n in names if n not in mods]
    if missing:
        raise ValueError(f"model has no layer {missing[0]!r} (expected a tinylm with HF Llama names)")
    return {n: mods[n] for n in names}


@torch.no_grad()
def capture_inputs(model: nn.Module, tokens: Tensor, names: list[str]) -> dict[str, Tensor]:
    """Inputs of the named linears on a forward of ``tokens`` -> ``{name: (B*T, in)}`` fp32."""
    got: dict[str, list[Tensor]] = {n: [] for n in names}
    hooks = [m.register_forward_pre_hook(lambda _m, args, n=n: got[n].append(args[0].detach().reshape(-1, args[0].shape[-1])))
             for n, m in linear_layers(model, names).items()]
    try:
        model(tokens[:, :-1])
    finally:
        for h in hooks:
            h.remove()
    return {n: torch.cat(v) for n, v in got.items()}


def outlier_stats(x: Tensor) -> dict[str, float]:
    """Outlier statistics of one linear's inputs ``x`` (n, in).

    ``kurtosis``: Pearson kurtosis of all entries (3 for a Gaussian); ``rms_ratio``: max over input
    channels of the per-channel RMS divided by its median (1 = no outlier channel).
    """
    x = x.double()
    z = x.flatten() - x.mean()
    kurt = float((z**4).mean() / (z**2).mean() ** 2)
    rms = x.pow(2).mean(0).sqrt()
    return {"kurtosis": kurt, "rms_ratio": float(rms.max() / rms.median().clamp_min(1e-12))}


# ---------------------------------------------------------------------------------------
# fake-quantized execution
# ---------------------------------------------------------------------------------------


class FakeQuantLinear(nn.Module):
    """``y = Q_a(x R) W_hat^T + (Q_a(x R) A) B`` : a fake-quantized weight, optional low-rank adapter
    ``A`` (in, k), ``B`` (k, out) (already fake-quantized by the caller), per-token input quantization and
    an optional online input rotation ``R`` (in, in) (SpinQuant's R4; ``W_hat`` must then hold ``W R``)."""

    def __init__(self, weight: Tensor, act_bits: int | None = None, clip: float = 1.0,
                 a: Tensor | None = None, b: Tensor | None = None, rotate: Tensor | None = None):
        super().__init__()
        self.register_buffer("weight", weight.float().contiguous())
        self.register_buffer("a", None if a is None else a.float().contiguous())
        self.register_buffer("b", None if b is None else b.float().contiguous())
        self.register_buffer("rotate", None if rotate is None else rotate.float().contiguous())
        self.act_bits, self.clip = act_bits, clip

    def forward(self, x: Tensor) -> Tensor:
        if self.rotate is not None:
            x = x @ self.rotate
        xq = quant_act(x, self.act_bits, self.clip)
        y = xq @ self.weight.T
        return y if self.a is None else y + (xq @ self.a) @ self.b


class KVQuant(nn.Module):
    """KV-cache fake quantization: the output of ``inner`` (a ``k_proj`` / ``v_proj``, (..., H * hd)) quantized per
    token and head (symmetric, ``bits``), i.e. what a 4-bit KV cache stores.

    Assumption: keys are quantized before RoPE (RoPE is a per-pair rotation, so the per-head range barely changes);
    SpinQuant/ResQ quantize the cached keys after RoPE. With ``ste`` the rounding passes gradients straight
    through (identity backward), for learning rotations through the quantized cache."""

    def __init__(self, inner: nn.Module, bits: int, head_dim: int, ste: bool = False):
        super().__init__()
        self.inner, self.bits, self.head_dim, self.ste = inner, bits, head_dim, ste

    def forward(self, x: Tensor) -> Tensor:
        y = self.inner(x)
        yq = quant_act(y.unflatten(-1, (-1, self.head_dim)), self.bits).flatten(-2)
        return y + (yq - y).detach() if self.ste else yq


def with_kv_quant(model: TinyLM, layers: dict[str, nn.Module], bits: int, ste: bool = False) -> dict[str, nn.Module]:
    """``layers`` with every ``k_proj`` / ``v_proj`` (the given replacement, else the model's own) wrapped in
    :class:`KVQuant` (``ste``: straight-through rounding, for training)."""
    mods = dict(model.named_modules())
    hd = model.spec.d_model // model.spec.n_heads
    kv = [n for n in model.linear_names() if n.endswith(("k_proj", "v_proj"))]
    return {**layers, **{n: KVQuant(layers.get(n, mods[n]), bits, hd, ste) for n in kv}}


def swap_linears(model: nn.Module, layers: dict[str, nn.Module]) -> nn.Module:
    """A deep copy of ``model`` with the named submodules replaced by ``layers[name]``."""
    model = copy.deepcopy(model)
    for name, new in layers.items():
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)
    return model


def quantize_weights(model: TinyLM, calib: Tensor, fmt: WeightQuant, method: str, *,
                     percdamp: float = 0.01, blocksize: int = 128, act_order: bool = False) -> dict[str, Quantized]:
    """Quantize every decoder linear (the embedding and ``lm_head`` stay fp32, as GPTQ's Llama script does).

    ``method``: ``"rtn"`` or ``"gptq"``. GPTQ runs decoder layer by decoder layer as ``llama.py`` does: the
    Hessians of layer ``i`` come from inputs computed with layers ``< i`` already quantized.
    """
    if method not in ("rtn", "gptq"):
        raise ValueError(f"unknown weight quantization method {method!r}; known: ['gptq', 'rtn']")
    names = model.linear_names()
    mods = linear_layers(model, names)
    if method == "rtn":
        return {n: rtn(mods[n].weight.detach(), fmt, what=n) for n in names}
    out: dict[str, Quantized] = {}
    work = model
    for i in range(model.spec.n_layers):
        layer_names = [n for n in names if n.startswith(f"model.layers.{i}.")]
        xs = capture_inputs(work, calib, layer_names)
        for n in layer_names:
            out[n] = gptq(mods[n].weight.detach(), hessian(xs[n]), fmt, blocksize=blocksize, percdamp=percdamp,
                          act_order=act_order, what=n)
        work = swap_linears(work, {n: FakeQuantLinear(out[n].dequant) for n in layer_names})
    return out


# ---------------------------------------------------------------------------------------
# PLATFORM: what every quantization paper declares and reports alike
# ---------------------------------------------------------------------------------------


class TinyLMPaperParams(BaseModel):
    """The ``data`` and ``train`` sections every tinylm paper has (a paper's params model adds ``quantize`` and
    ``report`` after them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: CorpusParams = CorpusParams()
    train: TinyLMTrainParams = TinyLMTrainParams()


def tinylm_stages() -> tuple[Stage, Stage]:
    """The ``prepare`` (passages) and ``train`` (tinylm seeds) stages every quantization paper starts with.

    Both are shared stages: papers with the same ``data`` and ``train`` sections (the four quantization
    papers' full profiles) prepare the corpus and train the tinylm seeds once, in ``store/_shared``."""
    return (Stage("prepare", prepare_corpus, params=("data",), outputs={"passages": "passages.parquet"},
                  schemas={"passages": PASSAGES_SCHEMA}, shared=True),
            Stage("train", train_tinylm, params=("train",), inputs={"passages": "prepare.passages"},
                  outputs={"weights": "weights.safetensors", "metrics": "metrics.json"}, shared=True))


def outlier_note(outliers: pa.Table, rms_ratio: float) -> tuple[int, str]:
    """(#linear inputs whose max/median channel RMS is >= ``rms_ratio``, the report's sentence on them) from an
    outliers table (``seed``, ``layer``, ``kurtosis``, ``rms_ratio``)."""
    rows = outliers.to_pylist()
    n_out = sum(r["rms_ratio"] >= rms_ratio for r in rows)
    w = max(rows, key=lambda r: r["rms_ratio"])
    return n_out, (f"Outlier diagnosis: {n_out}/{len(rows)} linear inputs (layers x seeds) have max/median channel RMS >= "
                   f"{rms_ratio:g}; the largest is {w['layer']} (seed {w['seed']}): ratio {w['rms_ratio']:.1f}, "
                   f"kurtosis {w['kurtosis']:.1f}.")


def models_line(n_seeds: int, train_metrics: dict) -> str:
    """``"5 tinylm seeds (878,000 parameters, held-out 2.345 bits/char)"`` for a report's summary."""
    return (f"{n_seeds} tinylm seeds ({train_metrics['n_params']:,} parameters, held-out "
            f"{train_metrics['test_bpc_mean']:.3f} bits/char)")
