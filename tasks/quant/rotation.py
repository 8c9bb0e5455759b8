"""Rotations for quantization (QuaRot / SpinQuant / ResQ family): orthogonal draws, function-preserving
rotation of a tinylm, and the synthetic outlier-layer check.

SpinQuant (Liu et al. 2024, arXiv 2405.16406, Sec. 3): ``R1`` rotates the residual stream and is merged
into the embedding, every linear reading the stream (``q/k/v/gate/up``, ``lm_head``: ``W <- W R1``) and
every linear writing it (``o/down``: ``W <- R1^T W``), after the RMSNorm scales are folded into the
linears that follow them (an RMSNorm with unit weight commutes with an orthogonal ``R1``). ``R2`` rotates
each head between ``v_proj`` and ``o_proj``; ``R4`` is an online Hadamard on the input of ``down_proj``
(the activation is rotated at run time, the weight offline). In full precision the rotated model computes
the same function; rotations matter only once weights and activations are quantized.

Shapes: weights (out, in) as ``nn.Linear``; a rotation ``R`` (n, n) orthogonal, applied as ``x R``.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from models.tinylm import TinyLM, TinyLMSpec
from tasks.quant.fakequant import WeightQuant, quant_act, rtn
from tasks.quant.tinylm import FakeQuantLinear, linear_layers


def random_orthogonal(n: int, generator: torch.Generator) -> Tensor:
    """Haar-random orthogonal (n, n) in fp64: QR of a Gaussian with the signs of diag(R) fixed."""
    q, r = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=generator))
    return (q * torch.sign(torch.diagonal(r))[None, :]).contiguous()


def hadamard(n: int) -> Tensor:
    """Normalised Sylvester Hadamard (n, n), n a power of 2 (ValueError otherwise)."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"a Sylvester Hadamard matrix needs a power-of-2 size, got {n}")
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / n**0.5


def random_hadamard(n: int, generator: torch.Generator) -> Tensor:
    """``diag(+-1) H`` (QuaRot's randomized Hadamard); for n = 2^a * m with m not a power of 2,
    ``H_{2^a} (x) Q_m`` with a random orthogonal ``Q_m`` (Kronecker product)."""
    p = n & -n  # largest power-of-2 factor
    base = hadamard(p) if p == n else torch.kron(random_orthogonal(n // p, generator), hadamard(p))
    signs = torch.randint(0, 2, (n,), generator=generator, dtype=torch.int64).double() * 2 - 1
    return signs[:, None] * base


def draw_rotation(kind: str, n: int, generator: torch.Generator) -> Tensor:
    """One (n, n) draw: ``"orth"`` (Haar random orthogonal) or ``"hadamard"`` (randomized Hadamard)."""
    if kind not in ("orth", "hadamard"):
        raise ValueError(f"unknown rotation kind {kind!r}; known: ['hadamard', 'orth']")
    return random_orthogonal(n, generator) if kind == "orth" else random_hadamard(n, generator)


def fold_norms(model: TinyLM) -> TinyLM:
    """A copy with every RMSNorm weight folded into the linears it feeds (norm weights become 1)."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for layer in m.model.layers:
            for norm, lins in ((layer.input_layernorm, (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj)),
                               (layer.post_attention_layernorm, (layer.mlp.gate_proj, layer.mlp.up_proj))):
                for lin in lins:
                    lin.weight.mul_(norm.weight[None, :])
                norm.weight.fill_(1.0)
        m.lm_head.weight.mul_(m.model.norm.weight[None, :])
        m.model.norm.weight.fill_(1.0)
    return m


def check_rotations(model: TinyLM, r1: Tensor, r2: Tensor | None = None) -> None:
    """ValueError when ``model`` is not a tinylm with every expected layer or the rotation sizes do not fit."""
    if not isinstance(model, TinyLM):
        raise ValueError(f"rotation needs a tinylm (HF Llama layout), got {type(model).__name__}")
    linear_layers(model, model.linear_names())
    d, h = model.spec.d_model, model.spec.n_heads
    hd = d // h
    if tuple(r1.shape) != (d, d):
        raise ValueError(f"R1 must be ({d}, {d}), got {tuple(r1.shape)}")
    if r2 is not None and tuple(r2.shape) != (hd, hd):
        raise ValueError(f"R2 must be ({hd}, {hd}), got {tuple(r2.shape)}")


def rotated_weights(folded: TinyLM, r1: Tensor, r2: Tensor | None = None) -> dict[str, Tensor]:
    """The embedding, ``lm_head`` and decoder-linear weights (HF names) of a norm-folded tinylm with R1 / R2 merged,
    computed in ``r1``'s dtype and differentiable in ``r1`` / ``r2`` (the learned-rotation loss uses this; so does
    :func:`rotate_model`). Readers of the stream ``W <- W R1``, writers ``W <- R1^T W``; per head ``v <- R2^T v`` and
    the ``o_proj`` input ``<- R2``."""
    dt = r1.dtype
    h = folded.spec.n_heads
    blk = None if r2 is None else torch.block_diag(*[r2.to(dt)] * h)
    out = {"model.embed_tokens.weight": folded.model.embed_tokens.weight.detach().to(dt) @ r1,
           "lm_head.weight": folded.lm_head.weight.detach().to(dt) @ r1}
    for i, layer in enumerate(folded.model.layers):
        a, f = layer.self_attn, layer.mlp
        pre = f"model.layers.{i}."
        for name, lin in (("self_attn.q_proj", a.q_proj), ("self_attn.k_proj", a.k_proj), ("self_attn.v_proj", a.v_proj),
                          ("mlp.gate_proj", f.gate_proj), ("mlp.up_proj", f.up_proj)):
            out[pre + name + ".weight"] = lin.weight.detach().to(dt) @ r1
        out[pre + "self_attn.o_proj.weight"] = r1.T @ a.o_proj.weight.detach().to(dt)
        out[pre + "mlp.down_proj.weight"] = r1.T @ f.down_proj.weight.detach().to(dt)
        if blk is not None:
            out[pre + "self_attn.v_proj.weight"] = blk.T @ out[pre + "self_attn.v_proj.weight"]
            out[pre + "self_attn.o_proj.weight"] = out[pre + "self_attn.o_proj.weight"] @ blk
    return out


def rotate_model(model: TinyLM, r1: Tensor, r2: Tensor | None = None) -> TinyLM:
    """SpinQuant's R1 (residual stream, d x d) and optional R2 (per head, head_dim x head_dim), merged into
    the weights of a norm-folded copy (in fp64, :func:`rotated_weights`). Raises ValueError when the model lacks
    the expected layers or the rotation sizes do not fit."""
    check_rotations(model, r1, r2)
    m = fold_norms(model)
    with torch.no_grad():
        new = rotated_weights(m, r1.double(), None if r2 is None else r2.double())
        for name, w in new.items():
            p = m.get_parameter(name)
            p.copy_(w.to(p.dtype))
    return m


def synthetic_rotation_error(rotation: Tensor | None, *, n: int, d: int, out: int, n_outliers: int,
                             outlier_scale: float, df: int, w_bits: int, a_bits: int, group: int | None,
                             generator: torch.Generator) -> float:
    """Relative W{w_bits}A{a_bits} output error ``||X W^T - Q(X R) Q(W R)^T||^2 / ||X W^T||^2`` on a synthetic
    layer: Student-t(df) inputs (n, d) with ``n_outliers`` channels scaled by ``outlier_scale`` and their
    weight columns divided by it (Assumption: the compensation trained LLMs show, so the outlier channels
    inflate the activation range without dominating the output); ``rotation`` None = identity.""" 
    x = _student_t(n, d, df, generator)
    idx = torch.randperm(d, generator=generator)[:n_outliers]
    x[:, idx] *= outlier_scale
    w = torch.randn(out, d, dtype=torch.float64, generator=generator) / d**0.5
    w[:, idx] /= outlier_scale  # as in trained LLMs, outlier channels meet small weights: y is not dominated by them
    r = torch.eye(d, dtype=torch.float64) if rotation is None else rotation.double()
    xr, wr = x @ r, w @ r
    wq = rtn(wr, WeightQuant(bits=w_bits, group=group)).dequant
    y, yq = x @ w.T, quant_act(xr, a_bits) @ wq.T
    return float(((y - yq) ** 2).sum() / (y**2).sum())


def _student_t(n: int, d: int, df: int, generator: torch.Generator) -> Tensor:
    """Student-t(df) samples as z / sqrt(chi2 / df) from a seeded generator (fp64)."""
    z = torch.randn(n, d, dtype=torch.float64, generator=generator)
    chi2 = (torch.randn(n, d, df, dtype=torch.float64, generator=generator) ** 2).sum(-1)
    return z / torch.sqrt(chi2 / df)


def smooth_scales(x: Tensor, w: Tensor, alpha: float = 0.5) -> Tensor:
    """SmoothQuant (Xiao et al. 2023, Eq. 4) per-input-channel scales ``s_j = max|X_j|^a / max|W_j|^(1-a)``
    from calibration inputs ``x`` (n, in) and the weight ``w`` (out, in). The layer then computes
    ``(x / s) (W s)^T`` (the same function in full precision), with the outlier range moved into the weight."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"SmoothQuant alpha must be in [0, 1], got {alpha}")
    ax = x.reshape(-1, x.shape[-1]).abs().amax(0).double().clamp_min(1e-5)
    aw = w.abs().amax(0).double().clamp_min(1e-5)
    return ax**alpha / aw ** (1 - alpha)


def w4a4_layers(model: TinyLM, fmt: WeightQuant, act_bits: int | None, clip: float = 1.0,
                r4: Tensor | None = None) -> dict[str, FakeQuantLinear]:
    """Every decoder linear as RTN weights in ``fmt`` with per-token ``act_bits`` inputs; ``r4`` (d_ff, d_ff), if
    given, is SpinQuant's online rotation of the ``down_proj`` input (the weight holds ``W R4``)."""
    names = model.linear_names()
    mods = linear_layers(model, names)
    layers = {}
    for n in names:
        w = mods[n].weight.detach().double()
        rot = r4 if (r4 is not None and n.endswith("down_proj")) else None
        w = w @ rot.double() if rot is not None else w
        layers[n] = FakeQuantLinear(rtn(w.float(), fmt, n).dequant, act_bits, clip, rotate=rot)
    return layers


def spinquant_arm(model: TinyLM, kind: str, generator: torch.Generator, fmt: WeightQuant, act_bits: int | None,
                  clip: float = 1.0) -> tuple[TinyLM, dict[str, FakeQuantLinear]]:
    """SpinQuant's random-rotation arm: draws R1 (d), R2 (head width) and R4 (d_ff) of ``kind`` in that order
    from ``generator``, merges R1/R2 into a norm-folded copy, returns (rotated model, its W/A fake-quant linears)."""
    r1, r2, r4 = draw_r124(model.spec, kind, generator)
    rot = rotate_model(model, r1, r2)
    return rot, w4a4_layers(rot, fmt, act_bits, clip, r4)


def draw_r124(spec: TinyLMSpec, kind: str, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """R1 (d_model), R2 (head width), R4 (d_ff) of ``kind``, drawn in that order from ``generator`` (so a learned
    rotation initialised from draw ``i`` starts where the random arm's draw ``i`` is)."""
    return (draw_rotation(kind, spec.d_model, generator), draw_rotation(kind, spec.d_model // spec.n_heads, generator),
            draw_rotation(kind, spec.d_ff, generator))
