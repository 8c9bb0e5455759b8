"""Learned rotations (SpinQuant, Liu et al. 2024, arXiv 2405.16406, Sec. 3.2): R1 (residual stream) and R2 (per
head, V -> O) optimised on the Stiefel manifold by Cayley SGD, the loss being the fake-quantized network's
next-character cross-entropy on calibration passages, gradients passed straight through the rounding.

Cayley SGD (Li, Fuxin & Todorovic 2020, "Efficient Riemannian optimization on the Stiefel manifold via the Cayley
transform"; SpinQuant's ``train_utils/optimizer.py: SGDG``). For an orthogonal ``R`` with Euclidean gradient
``G = dL/dR``, the skew-symmetric ``Y = G R^T - R G^T`` and the step

    R <- (I + a/2 Y)^-1 (I - a/2 Y) R

is a rotation of ``R`` (the Cayley transform of a skew matrix is orthogonal), so ``R`` stays on the manifold, and it
descends: ``dL/da`` at ``a = 0`` is ``-||Y||_F^2 / 2``. (With ``Y`` as written the other sign convention,
``(I - a/2 Y)^-1 (I + a/2 Y)``, would ascend; SGDG builds its ``W`` from the *negative* gradient.) Differences
from the reference code, each an assumption: we solve the linear system exactly (d <= 384) instead of SGDG's
5 fixed-point iterations, so no QR re-orthogonalisation is needed; the step size ``a = min(lr_t, 1 / ||Y||_1)``
is capped as SGDG caps it (its ``t = 1 / (||W||_1 + eps)``), ``lr_t`` following SpinQuant's cosine schedule from
``lr`` (SpinQuant: 1.5, 100 steps); no momentum (SGDG's default in SpinQuant's script is 0).

Straight-through fake quant (assumption, as SpinQuant's quantizers): weights RTN per output channel and
activations per token in the forward pass, identity in the backward (scales detached); the online R4 before
``down_proj`` is a fixed randomized Hadamard, not learned (as in SpinQuant). Evaluation after learning merges the
learned R1 / R2 with :func:`tasks.quant.rotation.rotate_model` and quantizes with the same RTN code as the random
arms (:func:`tasks.quant.rotation.w4a4_layers`), so the learned and random arms differ only in R1 / R2.

Shapes: ``R1`` (d, d), ``R2`` (hd, hd), ``R4`` (d_ff, d_ff), applied as ``x R``; tokens (N, T) int64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F

from models.tinylm import TinyLM
from tasks.quant.fakequant import WeightQuant, quant_act, rtn
from tasks.quant.rotation import check_rotations, fold_norms, rotated_weights
from tasks.quant.tinylm import swap_linears, with_kv_quant


def skew_grad(r: Tensor, g: Tensor) -> Tensor:
    """``Y = G R^T - R G^T`` (skew-symmetric): the Riemannian gradient of the Cayley parametrisation."""
    return g @ r.T - r @ g.T


def cayley_step(r: Tensor, g: Tensor, lr: float) -> Tensor:
    """One Cayley SGD step of the orthogonal ``r`` (n, n) along the Euclidean gradient ``g`` (n, n), in fp64:
    ``(I + a/2 Y)^-1 (I - a/2 Y) r`` with ``a = min(lr, 1 / ||Y||_1)`` (SGDG's cap). ValueError when ``lr <= 0`` or
    the shapes differ."""
    if not lr > 0:
        raise ValueError(f"Cayley SGD needs a learning rate > 0, got {lr}")
    if r.shape != g.shape or r.dim() != 2 or r.shape[0] != r.shape[1]:
        raise ValueError(f"Cayley step needs a square R and a gradient of its shape, got {tuple(r.shape)} and {tuple(g.shape)}")
    r, g = r.double(), g.double()
    y = skew_grad(r, g)
    norm1 = float(torch.linalg.matrix_norm(y, ord=1))
    a = min(lr, 1.0 / (norm1 + 1e-8))
    eye = torch.eye(r.shape[0], dtype=torch.float64)
    return torch.linalg.solve(eye + 0.5 * a * y, (eye - 0.5 * a * y) @ r)


def orth_error(r: Tensor) -> float:
    """``max |R^T R - I|``."""
    r = r.double()
    return float((r.T @ r - torch.eye(r.shape[0], dtype=torch.float64)).abs().max())


def ste_act(x: Tensor, bits: int | None, clip: float = 1.0) -> Tensor:
    """Per-token fake quantization with a straight-through (identity) backward."""
    return x if bits is None else x + (quant_act(x, bits, clip) - x).detach()


class STEQuantLinear(nn.Module):
    """``y = Q_a(x R4) Q_w(W R4)^T`` with straight-through rounding: the training-time twin of
    :class:`tasks.quant.tinylm.FakeQuantLinear` over :func:`tasks.quant.rotation.w4a4_layers` (same RTN, same
    per-token quantizer). ``weight`` is a buffer, replaced per step through :func:`torch.func.functional_call`."""

    def __init__(self, weight: Tensor, fmt: WeightQuant, act_bits: int | None, clip: float = 1.0,
                 rotate: Tensor | None = None, what: str = "weight"):
        super().__init__()
        self.register_buffer("weight", weight.detach().float().clone())
        self.register_buffer("rotate", None if rotate is None else rotate.float().contiguous())
        self.fmt, self.act_bits, self.clip, self.what = fmt, act_bits, clip, what

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        if self.rotate is not None:
            x, w = x @ self.rotate, w @ self.rotate
        with torch.no_grad():
            wq = rtn(w.detach(), self.fmt, self.what).dequant
        w = w + (wq - w).detach()
        return ste_act(x, self.act_bits, self.clip) @ w.T


def learn_rotations(model: TinyLM, calib: Tensor, *, r1: Tensor, r2: Tensor | None, r4: Tensor | None,
                    fmt: WeightQuant, act_bits: int | None, clip: float = 1.0, kv_bits: int | None = None,
                    steps: int = 100, lr: float = 1.5, batch_size: int = 8,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None, list[float]]:
    """SpinQuant's rotation learning: Cayley SGD on R1 (and R2 when given) from the initial draws ``r1`` / ``r2``,
    minimising the W/A(/KV)-fake-quantized cross-entropy of ``calib`` (N, T) passages (``batch_size`` random passages
    per step, cosine-decayed ``lr``); ``r4`` is the fixed online rotation before ``down_proj``.

    Returns (R1, R2, loss curve in bits/char: the whole calibration set's quantized loss at the start, the batch loss
    of each step, the whole set's loss at the end), rotations in fp64. Raises ValueError (before any work) for a model without the tinylm layers, misfit rotation sizes,
    ``steps < 0``, ``lr <= 0``, ``batch_size < 1`` or an empty calibration set."""
    check_rotations(model, r1, r2)
    if r4 is not None and tuple(r4.shape) != (model.spec.d_ff, model.spec.d_ff):
        raise ValueError(f"R4 must be ({model.spec.d_ff}, {model.spec.d_ff}), got {tuple(r4.shape)}")
    if steps < 0:
        raise ValueError(f"rotation learning steps must be >= 0, got {steps}")
    if not lr > 0:
        raise ValueError(f"rotation learning rate must be > 0, got {lr}")
    if batch_size < 1 or calib.dim() != 2 or len(calib) == 0:
        raise ValueError(f"need batch_size >= 1 and a non-empty (N, T) calibration set, got {batch_size}, {tuple(calib.shape)}")
    for what, r in (("R1", r1), ("R2", r2), ("R4", r4)):
        if r is not None and orth_error(r) > 1e-6:
            raise ValueError(f"initial {what} is not orthogonal (max |R^T R - I| = {orth_error(r):.2e})")
    folded = fold_norms(model)
    for p in folded.parameters():
        p.requires_grad_(False)
    names = model.linear_names()
    layers = {n: STEQuantLinear(folded.get_submodule(n).weight, fmt, act_bits, clip,
                                r4 if n.endswith("down_proj") else None, n) for n in names}
    if kv_bits is not None:
        layers = with_kv_quant(folded, layers, kv_bits, ste=True)
    net = swap_linears(folded, layers).train(False)
    keys = {k.replace(".inner.", "."): k for k in net.state_dict()}  # KVQuant nests k/v_proj as ``.inner``
    g = generator if generator is not None else torch.Generator().manual_seed(0)

    def loss_of(a: Tensor, b: Tensor | None, tokens: Tensor) -> Tensor:
        w = rotated_weights(folded, a, b)
        logits = functional_call(net, {keys[k]: v for k, v in w.items()}, (tokens[:, :-1],), strict=False)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))

    def calib_bpc(a: Tensor, b: Tensor | None) -> float:
        with torch.no_grad():
            a, b = a.float(), None if b is None else b.float()
            total = sum(float(loss_of(a, b, calib[i : i + 64])) * len(calib[i : i + 64]) for i in range(0, len(calib), 64))
        return total / len(calib) / math.log(2)

    r1, r2 = r1.double().clone(), None if r2 is None else r2.double().clone()
    curve = [calib_bpc(r1, r2)]
    for step in range(steps):
        lr_t = lr * 0.5 * (1 + math.cos(math.pi * step / steps))  # SpinQuant: cosine schedule
        a = r1.float().requires_grad_(True)
        b = None if r2 is None else r2.float().requires_grad_(True)
        idx = torch.randint(0, len(calib), (min(batch_size, len(calib)),), generator=g)
        loss = loss_of(a, b, calib[idx])
        grads = torch.autograd.grad(loss, [a] if b is None else [a, b])
        curve.append(float(loss.detach()) / math.log(2))
        if lr_t > 0:
            r1 = cayley_step(r1, grads[0], lr_t)
            if b is not None:
                r2 = cayley_step(r2, grads[1], lr_t)
    curve.append(calib_bpc(r1, r2))
    return r1, r2, curve
