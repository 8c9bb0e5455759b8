"""ResQ's subspace split and BoA's attention-aware GPTQ on hand-checkable cases."""

from __future__ import annotations

import math

import pytest
import torch

from models.tinylm import TinyLM, TinyLMSpec
from tasks.quant.boa import attention_hessians, boa_quantize, rope_matrices
from tasks.quant.fakequant import WeightQuant, gptq, hessian, rtn
from tasks.quant.resq import mixed_layer, pca_basis, quant_levels, resq_projection


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------- ResQ


def test_pca_subspace_of_a_rank_r_input_is_exact():
    g = _gen()
    d, r = 32, 8  # NOTE: r wide enough that no row of the 8-bit block is all-positive (GPTQ's symmetric grid clips those)
    x = torch.randn(200, r, dtype=torch.float64, generator=g) @ torch.randn(r, d, dtype=torch.float64, generator=g)
    p = resq_projection(x, r, "pca", g)
    torch.testing.assert_close(p.T @ p, torch.eye(d, dtype=torch.float64), atol=1e-10, rtol=0)
    xp = x @ p
    assert xp[:, : d - r].abs().max() < 1e-9  # the whole input lives in the 8-bit block
    assert xp[:, d - r :].abs().max() > 1.0
    vals = pca_basis(x)[1]
    assert vals[r:].abs().max() < 1e-9 and (vals[:r] > 0.1).all()
    # so a 4-bit low block costs nothing: the layer output error is the 8-bit block's alone
    w = torch.randn(10, d, dtype=torch.float64, generator=g)
    layer, bits = mixed_layer(w, p, r, (4, 8), (4, 8))
    y, yq = x @ w.T, layer(x.float()).double()
    assert ((y - yq) ** 2).sum() / (y**2).sum() < 1e-3
    assert bits == 10 * (d - r) * 4 + 10 * 16 + 10 * r * 8 + 10 * 16


def test_projection_preserves_the_function_and_channels_is_a_permutation():
    g = _gen(1)
    x = torch.randn(64, 16, dtype=torch.float64, generator=g)
    x[:, 5] *= 30
    w = torch.randn(8, 16, dtype=torch.float64, generator=g)
    for sub in ("pca", "random", "channels"):
        p = resq_projection(x, 2, sub, g)
        torch.testing.assert_close((x @ p) @ (w @ p).T, x @ w.T)
    p = resq_projection(x, 1, "channels", g)
    assert p[5, -1] == 1 and set(p.abs().sum(0).tolist()) == {1.0}
    with pytest.raises(ValueError, match="r=17"):
        resq_projection(x, 17, "pca", g)
    with pytest.raises(ValueError, match="unknown ResQ subspace 'svd'"):
        resq_projection(x, 2, "svd", g)


def test_quant_levels_hand_case():
    x = torch.tensor([[1.0, -0.5, 0.26, 0.0]])
    # 5 levels: s = 1 / 2 -> codes 2, -1, 1, 0
    torch.testing.assert_close(quant_levels(x, 5), torch.tensor([[1.0, -0.5, 0.5, 0.0]]))
    with pytest.raises(ValueError, match="odd"):
        quant_levels(x, 4)
    layer, bits = mixed_layer(torch.ones(2, 4), torch.eye(4), 0, (4, 8), (4, 8), levels=23)
    assert bits == pytest.approx(2 * 4 * math.log2(23) + 2 * 16)


# ---------------------------------------------------------------------------------------------- BoA


def _layer(seed: int, out: int = 16, inp: int = 32):
    g = _gen(seed)
    x = torch.randn(256, inp, dtype=torch.float64, generator=g) @ torch.randn(inp, inp, dtype=torch.float64, generator=g)
    return torch.randn(out, inp, dtype=torch.float64, generator=g), hessian(x)


def test_boa_without_row_hessian_is_gptq():
    w, h = _layer(0)
    fmt = WeightQuant(bits=3, group=None, symmetric=True)
    ref = gptq(w, h, fmt)
    for heads in (1, 4):
        got = boa_quantize(w, h, None, fmt, heads)
        assert (got.dequant - ref.dequant).abs().max() < 1e-9
        assert torch.equal(got.codes, ref.codes)
    eye = torch.eye(4, dtype=torch.float64).expand(4, 4, 4)  # H_row = I: no coupling, still GPTQ
    assert (boa_quantize(w, h, eye, fmt, 4).dequant - ref.dequant).abs().max() < 1e-9


def test_boa_lowers_the_kronecker_objective_vs_gptq():
    """On tr(dW H_col dW^T H_row) with a correlated H_row (what the attention logits see), BoA beats GPTQ."""
    fmt = WeightQuant(bits=2, group=None, symmetric=True)
    wins, ratios = 0, []
    for seed in range(5):
        w, h = _layer(seed)
        g = _gen(100 + seed)
        k = torch.randn(512, 4, dtype=torch.float64, generator=g) @ torch.randn(4, 16, dtype=torch.float64, generator=g)
        h_row = (k.T @ k / 512 + 0.05 * torch.eye(16, dtype=torch.float64))[None]  # one head of 16 rows

        def obj(q):
            dw = w - q.dequant
            return float(torch.trace(dw @ h @ dw.T @ h_row[0]))

        b, gq = obj(boa_quantize(w, h, h_row, fmt, 1)), obj(gptq(w, h, fmt))
        wins += b < gq
        ratios.append(b / gq)
    assert wins == 5 and max(ratios) < 0.9, ratios


def test_attention_hessians_shapes_and_rope():
    spec = TinyLMSpec(d_model=16, n_heads=2, n_layers=1, d_ff=32, max_len=8)
    torch.manual_seed(0)
    model = TinyLM(spec)
    m = rope_matrices(model, 5)
    q = torch.randn(5, 8, dtype=torch.float64)
    cos, sin = model.rope_cos[:5].double(), model.rope_sin[:5].double()
    from models.tinylm import rotate_half

    torch.testing.assert_close(torch.einsum("ti,tij->tj", q, m), q * cos + rotate_half(q) * sin)
    hs = attention_hessians(model, 0, torch.randn(3, 5, 16))
    assert hs["h_col"].shape == (16, 16) and hs["h_row_q"].shape == (2, 8, 8) and hs["h_col_v"].shape == (2, 16, 16)
    for k in ("h_row_q", "h_row_k", "h_col_v"):
        torch.testing.assert_close(hs[k], hs[k].transpose(-1, -2))
        assert (torch.linalg.eigvalsh(hs[k]) > -1e-9).all()


def test_bad_heads_and_shapes():
    w, h = _layer(0)
    with pytest.raises(ValueError, match="3 heads do not divide 16"):
        boa_quantize(w, h, None, WeightQuant(bits=2, group=None), 3)
    with pytest.raises(ValueError, match="H_row shape"):
        boa_quantize(w, h, torch.eye(3)[None], WeightQuant(bits=2, group=None), 1)
    assert rtn(w.float(), WeightQuant(bits=2, group=None)).codes.max() <= 3


def test_kv_quant_per_token_and_head():
    from torch import nn

    from tasks.quant.tinylm import KVQuant

    lin = nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(4))
    x = torch.tensor([[1.0, 0.26, 10.0, -2.6]])  # heads of width 2: [1, 0.26] and [10, -2.6]
    # 3 bits: qmax 3, s = max|.| / 3 per head -> [1, 1/3], [10, -10/3]
    torch.testing.assert_close(KVQuant(lin, 3, 2)(x), torch.tensor([[1.0, 1 / 3, 10.0, -10 / 3]]))
