"""Fake quantization (simulated on CPU in fp32/fp64) and the baselines every PTQ paper compares to.

* Weights: per output channel (``group=None``) or per group of ``group`` consecutive input columns,
  symmetric or asymmetric, ``bits`` in [1, 16]. The quantizer is GPTQ's (``IST-DASLab/gptq``,
  ``quant.py``): asymmetric ``scale = (max(w, 0) - min(w, 0)) / (2^b - 1)``, ``zero = round(-min / scale)``;
  symmetric ``scale = 2 max|w| / (2^b - 1)``, ``zero = 2^(b-1)``; codes ``u = clamp(round(w / scale) + zero,
  0, 2^b - 1)`` and ``w_hat = scale (u - zero)``. A symmetric code ``u - 2^(b-1)`` is exactly the signed
  code of :class:`kernels.quant.QuantWeight` (``to_kernel``), so 4/8-bit results run on the real kernels.
* Activations: per token (row), symmetric, with a clip ratio: ``s = clip * max|x| / (2^(b-1) - 1)``.
* Bit accounting (``weight_bits``): codes ``b`` bits each, one scale per group (fp16: 16 bits) and, when
  asymmetric, one zero point per group (uint8: 8 bits) -- the storage of :mod:`kernels.quant.format`.
* RTN (``rtn``) and GPTQ (``gptq``, Frantar et al. 2023, Alg. 1 as ``gptq.py`` does it: ``H = 2 X^T X / n``,
  dead columns zeroed, 1 % mean-diagonal damping, upper Cholesky factor of ``H^-1``, lazy blocks of 128
  with error feedback, optional act-order with static groups).

Shapes: weights ``(out, in)`` as ``nn.Linear``; scales / zeros ``(out, in / group)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from models.quant_linear import QuantLinear

SCALE_BITS = 16  # fp16 scale per group
ZERO_BITS = 8  # uint8 zero point per group (asymmetric only)


class WeightQuant(BaseModel):
    """A weight format.

    Attributes:
        bits: code width, 1..16.
        group: consecutive input columns sharing a scale; None = one per output channel.
        symmetric: zero point fixed at 2^(bits-1) (no stored zeros) vs a stored zero per group.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    bits: int = Field(default=4, ge=1, le=16)
    group: int | None = Field(default=128, ge=1)
    symmetric: bool = True

    def group_for(self, in_features: int, what: str = "weight") -> int:
        """The group width for a layer of ``in_features`` columns (ValueError naming ``what`` if it does not divide)."""
        g = in_features if self.group is None else self.group
        if in_features % g:
            raise ValueError(f"{what}: group size {g} does not divide the input width {in_features}")
        return g


@dataclass(frozen=True)
class Quantized:
    """A quantized weight: ``dequant = scale (codes - zero)`` per group.

    Attributes:
        dequant: (out, in) float, the fake-quantized weight.
        codes: (out, in) int32 unsigned codes in [0, 2^bits).
        scale: (out, G) float; zero: (out, G) int32 zero points.
        fmt: the format.
    """

    dequant: Tensor
    codes: Tensor
    scale: Tensor
    zero: Tensor
    fmt: WeightQuant

    def to_kernel(self, bias: Tensor | None = None) -> QuantLinear:
        """The :class:`QuantLinear` that computes exactly ``dequant`` (4/8-bit formats only)."""
        g = self.codes.shape[1] // self.scale.shape[1]
        if self.fmt.symmetric:
            return QuantLinear.from_codes(self.codes - (1 << (self.fmt.bits - 1)), self.scale.float(), None, bias,
                                          bits=self.fmt.bits, group=g)
        return QuantLinear.from_codes(self.codes, self.scale.float(), self.zero, bias, bits=self.fmt.bits, group=g)

    def state_dict(self, prefix: str) -> dict[str, Tensor]:
        """Integer codes (uint8 when bits <= 8) + scales (fp32) + zeros, for safetensors."""
        dt = torch.uint8 if self.fmt.bits <= 8 else torch.int32
        return {f"{prefix}.codes": self.codes.to(dt).contiguous(), f"{prefix}.scales": self.scale.float().contiguous(),
                f"{prefix}.zeros": self.zero.to(dt).contiguous()}


def weight_bits(shape: tuple[int, int], fmt: WeightQuant) -> int:
    """Exact storage bits of an ``(out, in)`` weight: codes + one scale (+ zero) per group."""
    out, inp = shape
    groups = out * (inp // fmt.group_for(inp))
    return out * inp * fmt.bits + groups * (SCALE_BITS + (0 if fmt.symmetric else ZERO_BITS))


def find_params(w: Tensor, bits: int, symmetric: bool) -> tuple[Tensor, Tensor]:
    """GPTQ's ``Quantizer.find_params`` per row of ``w`` (R, C) -> (scale (R,), zero (R,))."""
    maxq = (1 << bits) - 1
    xmin = torch.minimum(w.min(1).values, torch.zeros((), dtype=w.dtype))
    xmax = torch.maximum(w.max(1).values, torch.zeros((), dtype=w.dtype))
    if symmetric:
        xmax = torch.maximum(xmin.abs(), xmax)
        xmin = torch.where(xmin < 0, -xmax, xmin)
    dead = (xmin == 0) & (xmax == 0)
    xmin, xmax = torch.where(dead, -1.0, xmin), torch.where(dead, 1.0, xmax)
    scale = (xmax - xmin) / maxq
    zero = torch.full_like(scale, (maxq + 1) // 2) if symmetric else torch.round(-xmin / scale)
    return scale, zero


def quantize(w: Tensor, scale: Tensor, zero: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """(codes, dequant) of ``w`` with broadcastable ``scale``/``zero``."""
    q = torch.clamp(torch.round(w / scale) + zero, 0, (1 << bits) - 1)
    return q, scale * (q - zero)


def rtn(w: Tensor, fmt: WeightQuant, what: str = "weight") -> Quantized:
    """Round-to-nearest of ``w`` (out, in) in format ``fmt``."""
    out, inp = w.shape
    g = fmt.group_for(inp, what)
    wg = w.reshape(out * (inp // g), g)
    scale, zero = find_params(wg, fmt.bits, fmt.symmetric)
    q, dq = quantize(wg, scale[:, None], zero[:, None], fmt.bits)
    return Quantized(dq.reshape(out, inp), q.reshape(out, inp).int(), scale.reshape(out, -1), zero.reshape(out, -1).int(), fmt)


def quant_act(x: Tensor, bits: int | None, clip: float = 1.0) -> Tensor:
    """Per-token (last-dim row) symmetric fake quantization with clip ratio ``clip``; ``bits`` None = identity."""
    if bits is None:
        return x
    if not 2 <= bits <= 16 or not 0 < clip <= 1:
        raise ValueError(f"activation bits must be in [2, 16] and clip in (0, 1], got bits={bits}, clip={clip}")
    qmax = (1 << (bits - 1)) - 1
    s = x.abs().amax(-1, keepdim=True) * clip / qmax
    s = torch.where(s == 0, torch.ones_like(s), s)
    return torch.clamp(torch.round(x / s), -qmax - 1, qmax) * s


def hessian(x: Tensor) -> Tensor:
    """GPTQ's proxy Hessian ``H = 2 X^T X / n`` of a layer's inputs ``x`` (n, in), in fp64."""
    x = x.reshape(-1, x.shape[-1]).double()
    return 2.0 * x.T @ x / x.shape[0]


def gptq(w: Tensor, h: Tensor, fmt: WeightQuant, *, blocksize: int = 128, percdamp: float = 0.01,
         act_order: bool = False, what: str = "weight") -> Quantized:
    """GPTQ of ``w`` (out, in) given the Hessian ``h`` (in, in), as ``GPTQ.fasterquant`` does it.

    Computes in fp64. With ``act_order`` columns are visited by decreasing ``diag(H)``; group
    parameters are then fixed up front from the unmodified weight (``static_groups``, so groups
    stay contiguous in the original column order and the result runs on the kernels).
    """
    out, inp = w.shape
    if h.shape != (inp, inp):
        raise ValueError(f"{what}: Hessian shape {tuple(h.shape)} != ({inp}, {inp})")
    if not 0 <= percdamp < 1 or blocksize < 1:
        raise ValueError(f"{what}: need 0 <= percdamp < 1 and blocksize >= 1, got {percdamp}, {blocksize}")
    g = fmt.group_for(inp, what)
    W, H = w.double().clone(), h.double().clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    static = None
    if act_order:  # static groups from the (dead-zeroed) original weight
        s, z = find_params(W.reshape(out * (inp // g), g), fmt.bits, fmt.symmetric)
        static = (s.reshape(out, -1), z.reshape(out, -1))
        perm = torch.argsort(torch.diag(H), descending=True)
        W, H = W[:, perm], H[perm][:, perm]
        invperm = torch.argsort(perm)
    else:
        perm = torch.arange(inp)
    damp = percdamp * torch.mean(torch.diag(H))
    H[range(inp), range(inp)] += damp
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros_like(W)
    codes = torch.zeros_like(W)
    scales = torch.zeros(out, inp // g, dtype=W.dtype)
    zeros = torch.zeros(out, inp // g, dtype=W.dtype)
    scale = zero = None
    for i1 in range(0, inp, blocksize):
        i2 = min(i1 + blocksize, inp)
        W1, Hinv1 = W[:, i1:i2].clone(), Hinv[i1:i2, i1:i2]
        Err1 = torch.zeros_like(W1)
        for i in range(i2 - i1):
            col = int(perm[i1 + i])
            if static is not None:
                scale, zero = static[0][:, col // g], static[1][:, col // g]
            elif (i1 + i) % g == 0:  # as gptq.py: group params from the outer W (earlier blocks' feedback applied)
                scale, zero = find_params(W[:, i1 + i : i1 + i + g], fmt.bits, fmt.symmetric)
                scales[:, (i1 + i) // g], zeros[:, (i1 + i) // g] = scale, zero
            wcol, d = W1[:, i], Hinv1[i, i]
            q, dq = quantize(wcol, scale, zero, fmt.bits)
            Q[:, i1 + i], codes[:, i1 + i] = dq, q
            err = (wcol - dq) / d
            W1[:, i:] -= err[:, None] @ Hinv1[i, i:][None, :]
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    if static is not None:
        Q, codes = Q[:, invperm], codes[:, invperm]
        scales, zeros = static
    return Quantized(Q.to(w.dtype), codes.int(), scales.to(w.dtype), zeros.int(), fmt)
