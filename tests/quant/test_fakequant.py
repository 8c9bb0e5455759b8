"""The fake-quant library: hand-computed round trips, bit accounting, RTN vs GPTQ, kernels parity."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from kernels.quant import QuantWeight
from tasks.quant.fakequant import WeightQuant, find_params, gptq, hessian, quant_act, rtn, weight_bits


def test_rtn_symmetric_hand_case():
    # one group [-1.4, 0.2, 0.7, 0.5]: scale = 2 * 1.4 / 15, zero 8; codes round(w / s) + 8
    w = torch.tensor([[-1.4, 0.2, 0.7, 0.5]], dtype=torch.float64)
    q = rtn(w, WeightQuant(bits=4, group=4, symmetric=True))
    s = 2 * 1.4 / 15
    assert q.scale.item() == pytest.approx(s) and q.zero.item() == 8
    assert q.codes.tolist() == [[0, 9, 12, 11]]  # -1.4/s = -7.5 -> round half even -8; 0.2/s=1.07; 0.7/s=3.75; 0.5/s=2.68
    torch.testing.assert_close(q.dequant, s * (q.codes - 8).double())


def test_rtn_asymmetric_hand_case_and_round_trip():
    w = torch.tensor([[0.0, 1.0, 2.0, 3.0, -3.0, -2.0, -1.0, 0.0]])
    q = rtn(w, WeightQuant(bits=2, group=4, symmetric=False))
    # group 0: min 0, max 3 -> scale 1, zero 0, exact; group 1: min -3, max 0 -> scale 1, zero 3, exact
    assert q.scale.tolist() == [[1.0, 1.0]] and q.zero.tolist() == [[0, 3]]
    assert q.codes.tolist() == [[0, 1, 2, 3, 0, 1, 2, 3]]
    torch.testing.assert_close(q.dequant, w)
    # a grid-exact weight survives a second quantization unchanged
    torch.testing.assert_close(rtn(q.dequant, q.fmt).dequant, q.dequant)


def test_per_channel_and_dead_rows():
    w = torch.zeros(2, 6)
    w[1] = torch.linspace(-1, 1, 6)
    q = rtn(w, WeightQuant(bits=8, group=None))
    assert q.scale.shape == (2, 1)
    assert torch.equal(q.dequant[0], torch.zeros(6))  # an all-zero row uses the [-1, 1] fallback, stays 0
    assert (q.dequant[1] - w[1]).abs().max() <= q.scale[1, 0] / 2 + 1e-7


@pytest.mark.parametrize("bits,group,sym", [(4, 16, True), (4, 32, False), (8, 128, True), (8, None, False), (3, 16, True)])
def test_bit_accounting(bits, group, sym):
    fmt = WeightQuant(bits=bits, group=group, symmetric=sym)
    out, inp = 12, 256
    g = group or inp
    assert weight_bits((out, inp), fmt) == out * inp * bits + out * (inp // g) * (16 + (0 if sym else 8))
    if bits in (4, 8):  # equals what the kernels store (fp16 scales, uint8 zeros, int4 packed two per byte)
        q = rtn(torch.randn(out, inp), fmt)
        kq = QuantWeight.from_codes(q.codes - (0 if not sym else 1 << (bits - 1)), q.scale, None if sym else q.zero,
                                    bits=bits, group=g)
        assert kq.nbytes * 8 == weight_bits((out, inp), fmt)


def test_kernel_layer_computes_the_fake_quantized_weight():
    w = torch.randn(16, 64)
    for sym in (True, False):
        q = rtn(w, WeightQuant(bits=4, group=16, symmetric=sym))
        assert torch.equal(q.to_kernel().to_dense(), q.dequant)


def test_bad_formats_are_named():
    with pytest.raises(ValidationError, match="bits"):
        WeightQuant(bits=0)
    with pytest.raises(ValidationError, match="bits"):
        WeightQuant(bits=17)
    with pytest.raises(ValueError, match="layers.0.mlp.down_proj: group size 32 does not divide the input width 48"):
        rtn(torch.randn(4, 48), WeightQuant(group=32), what="layers.0.mlp.down_proj")
    with pytest.raises(ValueError, match="activation bits"):
        quant_act(torch.randn(2, 4), 1)


def test_quant_act_per_token_with_clip():
    x = torch.tensor([[1.0, -0.5, 0.25, 127.0], [0.0, 0.0, 0.0, 0.0]])
    y = quant_act(x, 8)  # scale 127/127 = 1 on row 0
    assert y.tolist() == [[1.0, -0.0, 0.0, 127.0], [0.0, 0.0, 0.0, 0.0]]
    y = quant_act(x, 8, clip=0.5)  # scale 0.5: the outlier is clipped to 127 * 0.5
    assert y[0].tolist() == [1.0, -0.5, 0.0, 63.5]


def _layer(seed=0, out=32, inp=64, n=512):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(inp, inp, generator=g) / inp**0.5 + torch.eye(inp)  # correlated inputs: where GPTQ helps
    x = torch.randn(n, inp, generator=g, dtype=torch.float64) @ mix.double()
    return torch.randn(out, inp, generator=g, dtype=torch.float64), x


@pytest.mark.parametrize("group", [None, 16])
def test_gptq_beats_rtn_on_layer_output(group):
    w, x = _layer()
    fmt = WeightQuant(bits=3, group=group)
    err = {name: float(((x @ w.T - x @ q.dequant.T) ** 2).mean())
           for name, q in (("rtn", rtn(w, fmt)), ("gptq", gptq(w, hessian(x), fmt)))}
    assert err["gptq"] < 0.8 * err["rtn"], err


def test_gptq_act_order_static_groups_beats_rtn_and_runs_on_kernels():
    w, x = _layer(1)
    fmt = WeightQuant(bits=4, group=16)
    q = gptq(w, hessian(x), fmt, act_order=True)
    e_rtn = float(((x @ w.T - x @ rtn(w, fmt).dequant.T) ** 2).mean())
    assert float(((x @ w.T - x @ q.dequant.T) ** 2).mean()) < e_rtn
    assert torch.allclose(q.to_kernel().to_dense().double(), q.dequant, atol=1e-6)


def _reference_gptq(w, h, fmt, percdamp=0.01):
    """A plain loop from Frantar et al. Alg. 1 without lazy blocks: quantize column j, spread its error
    over the remaining columns with the rows of the upper Cholesky factor of H^-1."""
    W, H = w.double().clone(), h.double().clone()
    n = W.shape[1]
    g = fmt.group or n
    H += percdamp * torch.diag(H).mean() * torch.eye(n, dtype=H.dtype)
    U = torch.linalg.cholesky(torch.linalg.inv(H), upper=True)
    Q = torch.zeros_like(W)
    for j in range(n):
        if j % g == 0:
            scale, zero = find_params(W[:, j : j + g], fmt.bits, fmt.symmetric)
        q = torch.clamp(torch.round(W[:, j] / scale) + zero, 0, 2**fmt.bits - 1)
        Q[:, j] = scale * (q - zero)
        err = (W[:, j] - Q[:, j]) / U[j, j]
        W[:, j:] -= err[:, None] * U[j, j:][None, :]
    return Q


@pytest.mark.parametrize("group", [None, 128])
def test_gptq_lazy_blocks_equal_the_plain_loop(group):
    w, x = _layer(2, out=8, inp=256, n=1024)
    fmt = WeightQuant(bits=4, group=group)
    got = gptq(w, hessian(x), fmt, blocksize=128).dequant
    assert (got - _reference_gptq(w, hessian(x), fmt)).abs().max() <= 1e-6


def test_gptq_with_identity_hessian_is_rtn():
    w = torch.randn(8, 32, dtype=torch.float64)
    fmt = WeightQuant(bits=4, group=16, symmetric=False)
    torch.testing.assert_close(gptq(w, torch.eye(32, dtype=torch.float64), fmt).dequant, rtn(w, fmt).dequant)
