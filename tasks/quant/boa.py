"""BoA: attention-aware Hessians for GPTQ-style post-training quantization without backpropagation (Kim et al.,
"BoA: Attention-aware Post-training Quantization without Backpropagation", ICML 2025, arXiv 2406.13474;
catalogue ``seed_catalog_B.md`` #22), on tinylm.

Objective (paper Sec. 3). GPTQ minimises each linear's own output error ``tr(dW H_col dW^T)`` with
``H_col = 2 X^T X / n``. BoA minimises the error of the attention module instead; for a projection of head
``h`` this gives a Kronecker-factored Hessian ``H_row (x) H_col`` whose *row* factor couples the output
channels (rows) of the head:

* ``q_proj``: attention logits ``s_tu = q_t M_t k~_u^T`` (``M_t`` the RoPE matrix at position t, ``k~`` the
  rotated keys), so ``H_row^Q[h] = mean_t M_t (K~_h^T K~_h / n) M_t^T`` (head_dim x head_dim);
* ``k_proj``: symmetric, ``H_row^K[h] = mean_t M_t (Q~_h^T Q~_h / n) M_t^T``;
* ``v_proj``: the head output is ``A_h X W_V,h^T``, so its column Hessian is per head,
  ``H_col^V[h] = 2 (A_h X)^T (A_h X) / n``, and rows stay independent (plain GPTQ per head);
* ``o_proj`` and the MLP: GPTQ's layer-wise Hessian.

Algorithm (as the authors' ``boa.py``): grid (scale, zero) fixed up front from the weight; rows of each head are
quantized one at a time, each row by GPTQ's column sweep with ``U_col`` (upper Cholesky factor of
``H_col^-1``), then the row's total error ``delta = w_row - q_row`` (= ``Err U_col``) is compensated on the rows
not yet quantized: ``W[i', :] -= U_row[i, i'] / U_row[i, i] * delta`` (``U_row`` the upper Cholesky factor of
``H_row^-1``). With ``H_row = I`` this is GPTQ exactly (tested). Decoder layers are processed in order, the
Hessians of layer i computed on inputs that went through the already-quantized layers < i (as GPTQ).

Simplifications (stated in the report): ``M_t`` is averaged over positions (the authors do the same to keep the
Hessian Kronecker) and the causal mask is ignored in ``H_row`` (sum over all key positions); no act-order for
rows or columns (our GPTQ baseline runs without act-order too); MinMax grid; damping 1 % of the mean diagonal
for both factors.

Shapes: weights (out, in) as ``nn.Linear``, out = n_heads * head_dim for q/k/v; ``H_col`` (in, in) or
(n_heads, in, in); ``H_row`` (n_heads, head_dim, head_dim).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from models.tinylm import TinyLM, rotate_half
from tasks.quant.fakequant import Quantized, WeightQuant, find_params, gptq, hessian, quantize
from tasks.quant.tinylm import FakeQuantLinear, capture_inputs, linear_layers, swap_linears


def upper_chol_inv(h: Tensor, percdamp: float) -> Tensor:
    """Upper Cholesky factor of ``(H + damp I)^-1`` for a batch ``h`` (..., n, n), damp = percdamp * mean diag, fp64."""
    h = h.double().clone()
    n = h.shape[-1]
    idx = torch.arange(n)
    h[..., idx, idx] += percdamp * h.diagonal(dim1=-2, dim2=-1).mean(-1, keepdim=True)
    return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)


def boa_quantize(w: Tensor, h_col: Tensor, h_row: Tensor | None, fmt: WeightQuant, n_heads: int, *,
                 percdamp: float = 0.01, what: str = "weight") -> Quantized:
    """BoA of one projection ``w`` (out, in), heads of ``out // n_heads`` consecutive rows.

    ``h_col``: (in, in) shared or (n_heads, in, in) per head; ``h_row``: (n_heads, hd, hd) or None (rows
    independent: GPTQ with a static grid). Computes in fp64."""
    out, inp = w.shape
    if out % n_heads:
        raise ValueError(f"{what}: {n_heads} heads do not divide {out} output rows")
    hd = out // n_heads
    hc = h_col.double().expand(n_heads, inp, inp).clone()
    if h_row is not None and tuple(h_row.shape) != (n_heads, hd, hd):
        raise ValueError(f"{what}: H_row shape {tuple(h_row.shape)} != ({n_heads}, {hd}, {hd})")
    g = fmt.group_for(inp, what)
    W = w.double().clone().view(n_heads, hd, inp)
    for h in range(n_heads):  # dead input columns, as GPTQ: weight zeroed, Hessian diagonal 1
        dead = hc[h].diagonal() == 0
        hc[h][dead, dead] = 1
        W[h][:, dead] = 0
    scale, zero = find_params(W.reshape(-1, g), fmt.bits, fmt.symmetric)  # static grid from the weight
    scale, zero = scale.view(n_heads, hd, inp // g), zero.view(n_heads, hd, inp // g)
    u_col = upper_chol_inv(hc, percdamp)  # (H, in, in)
    u_row = None if h_row is None else upper_chol_inv(h_row, percdamp)  # (H, hd, hd)
    Q, codes = torch.zeros_like(W), torch.zeros_like(W)
    for i in range(hd):
        row = W[:, i, :].clone()  # (H, in): row i of every head, swept by GPTQ over columns
        err = torch.zeros_like(row)
        for j in range(inp):
            q, dq = quantize(row[:, j], scale[:, i, j // g], zero[:, i, j // g], fmt.bits)
            Q[:, i, j], codes[:, i, j] = dq, q
            err[:, j] = (row[:, j] - dq) / u_col[:, j, j]
            row[:, j:] -= err[:, j, None] * u_col[:, j, j:]
        if u_row is not None and i + 1 < hd:  # PAPER: the row's error compensated on the later rows of its head
            delta = torch.bmm(err[:, None, :], u_col)[:, 0, :]  # (H, in) = w_row - q_row
            W[:, i + 1 :, :] -= (u_row[:, i, i + 1 :] / u_row[:, i, i, None])[:, :, None] * delta[:, None, :]
    return Quantized(Q.reshape(out, inp).to(w.dtype), codes.reshape(out, inp).int(), scale.reshape(out, -1).to(w.dtype),
                     zero.reshape(out, -1).int(), fmt)


def rope_matrices(model: TinyLM, t: int) -> Tensor:
    """``M`` (t, hd, hd) with ``rope(q)_t = q_t M_t`` (row vectors), from the model's RoPE tables."""
    cos, sin = model.rope_cos[:t].double(), model.rope_sin[:t].double()
    eye = torch.eye(cos.shape[1], dtype=torch.float64)
    return eye[None] * cos[:, None, :] + rotate_half(eye)[None] * sin[:, None, :]


def attention_hessians(model: TinyLM, layer: int, x: Tensor) -> dict[str, Tensor]:
    """BoA's Hessians for decoder layer ``layer`` of ``model`` (its weights unquantized) from the attention
    input ``x`` (N, T, d) (the output of ``input_layernorm``).

    Returns ``h_col`` (d, d) for q/k, ``h_row_q``, ``h_row_k`` (H, hd, hd) and ``h_col_v`` (H, d, d)."""
    attn = model.model.layers[layer].self_attn
    n, t, d = x.shape
    heads = model.spec.n_heads
    hd = d // heads
    xd = x.double()
    m = rope_matrices(model, t)  # (T, hd, hd)

    def heads_of(lin: torch.nn.Linear) -> Tensor:  # (N, H, T, hd), rotated
        y = (xd @ lin.weight.detach().double().T).view(n, t, heads, hd).transpose(1, 2)
        return torch.einsum("nhti,tij->nhtj", y, m)

    q, k = heads_of(attn.q_proj), heads_of(attn.k_proj)
    cov_q = torch.einsum("nhti,nhtj->hij", q, q) / (n * t)
    cov_k = torch.einsum("nhti,nhtj->hij", k, k) / (n * t)
    h_row_q = torch.einsum("tij,hjk,tlk->hil", m, cov_k, m) / t  # mean_t M_t C_K M_t^T
    h_row_k = torch.einsum("tij,hjk,tlk->hil", m, cov_q, m) / t
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    a = F.softmax((q @ k.transpose(-1, -2) / math.sqrt(hd)).masked_fill(~mask, float("-inf")), -1)  # (N, H, T, T)
    ax = a @ xd[:, None]  # (N, H, T, d)
    h_col_v = 2.0 * torch.einsum("nhti,nhtj->hij", ax, ax) / (n * t)
    return {"h_col": hessian(xd), "h_row_q": h_row_q, "h_row_k": h_row_k, "h_col_v": h_col_v}


def boa_quantize_model(model: TinyLM, calib: Tensor, fmt: WeightQuant, *, percdamp: float = 0.01,
                       blocksize: int = 128, row_hessian: bool = True) -> dict[str, Quantized]:
    """BoA over every decoder linear of ``model`` (embedding and ``lm_head`` stay fp32), layer by layer.

    ``row_hessian=False`` keeps the attention-aware column Hessian of ``v_proj`` but drops the row coupling of
    q/k (an ablation)."""
    names = model.linear_names()
    mods = linear_layers(model, names)
    heads = model.spec.n_heads
    out: dict[str, Quantized] = {}
    work = model
    for i in range(model.spec.n_layers):
        pre = f"model.layers.{i}."
        layer_names = [n for n in names if n.startswith(pre)]
        xs = capture_inputs(work, calib, layer_names)
        x_attn = xs[pre + "self_attn.q_proj"].view(calib.shape[0], calib.shape[1] - 1, -1)
        hs = attention_hessians(work, i, x_attn)
        for n in layer_names:
            wt = mods[n].weight.detach()
            if n.endswith(("q_proj", "k_proj")):
                hr = hs["h_row_q" if n.endswith("q_proj") else "h_row_k"] if row_hessian else None
                out[n] = boa_quantize(wt, hs["h_col"], hr, fmt, heads, percdamp=percdamp, what=n)
            elif n.endswith("v_proj"):
                out[n] = boa_quantize(wt, hs["h_col_v"], None, fmt, heads, percdamp=percdamp, what=n)
            else:
                out[n] = gptq(wt, hessian(xs[n]), fmt, blocksize=blocksize, percdamp=percdamp, what=n)
        work = swap_linears(work, {n: FakeQuantLinear(out[n].dequant) for n in layer_names})
    return out


@torch.no_grad()
def attention_output_error(model: TinyLM, quantized: dict[str, Tensor], tokens: Tensor) -> list[float]:
    """Per decoder layer: relative error ``||y_q - y||^2 / ||y||^2`` of the attention module's output when only
    that layer's q/k/v/o weights are replaced by ``quantized[name]`` (fake-quant weights), inputs from the
    full-precision model (the layer-local mechanism BoA targets)."""
    errs = []
    for i, layer in enumerate(model.model.layers):
        got: list[Tensor] = []
        hook = layer.self_attn.register_forward_hook(lambda _m, _a, y: got.append(y.double()))
        try:
            model(tokens[:, :-1])
            names = [n for n in model.linear_names() if n.startswith(f"model.layers.{i}.self_attn.")]
            swapped = swap_linears(model, {n: FakeQuantLinear(quantized[n]) for n in names})
            hook.remove()
            hook = swapped.model.layers[i].self_attn.register_forward_hook(lambda _m, _a, y: got.append(y.double()))
            swapped(tokens[:, :-1])
        finally:
            hook.remove()
        errs.append(float(((got[1] - got[0]) ** 2).sum() / (got[0] ** 2).sum()))
    return errs
