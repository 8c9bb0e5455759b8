"""QuantLinear / NMQuantLinear: forward vs the dequantized weight, conversions, state dicts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.nm_linear import sparsify_model
from models.quant_linear import NMQuantLinear, QuantLinear, quantize_model, weight_nbytes


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 32), nn.ReLU(),
                         nn.Linear(32, 10))


@pytest.mark.parametrize("bits,group,sym", [(4, 32, True), (4, 32, False), (8, None, True)])
def test_quant_linear_matches_its_dequantized_weight(bits, group, sym):
    lin = nn.Linear(64, 24)
    ql = QuantLinear.from_linear(lin, bits=bits, group=group, symmetric=sym)
    for shape in [(1, 64), (2, 3, 64), (70, 64)]:  # native (<=64 rows) and reference (>64)
        x = torch.randn(*shape)
        torch.testing.assert_close(ql(x), nn.functional.linear(x, ql.to_dense(), lin.bias),
                                   rtol=1e-5, atol=1e-5)
    err = (ql.to_dense() - lin.weight).abs().max()
    assert err <= ql.scales.float().max() / 2 + 1e-6


def test_from_codes_is_exactly_the_fake_quant_weight():
    codes = torch.randint(-8, 8, (12, 64))
    scales = torch.rand(12, 2) * 0.1 + 0.01
    ql = QuantLinear.from_codes(codes, scales, bias=torch.zeros(12), bits=4, group=32)
    fake = codes.float() * scales.repeat_interleave(32, dim=1)
    assert torch.equal(ql.to_dense(), fake)  # fp32 scales: identical weight


def test_state_dict_round_trip(tmp_path):
    from safetensors.torch import load_file, save_file

    ql = QuantLinear.from_linear(nn.Linear(64, 8), bits=4, group=32, symmetric=False)
    path = tmp_path / "ql.safetensors"
    save_file(ql.state_dict(), str(path))
    back = QuantLinear.from_state_dict(load_file(str(path)))
    x = torch.randn(3, 64)
    assert torch.equal(back(x), ql(x))
    other = QuantLinear.from_linear(nn.Linear(64, 8), bits=4, group=16, symmetric=False)
    with pytest.raises(ValueError, match="qmeta"):
        other.load_state_dict(ql.state_dict())
    sym = QuantLinear.from_linear(nn.Linear(64, 8), bits=4, group=32)
    with pytest.raises(ValueError, match="symmetric vs asymmetric"):
        sym.load_state_dict(ql.state_dict())


def test_pruned_then_quantized_mlp_serves():
    """A model pruned by nm_sparsity's layer type (NMLinear) converts layer by layer."""
    dense = _mlp()
    pruned = sparsify_model(dense, 2, 4, v=1)
    q = quantize_model(pruned, bits=4, group=16)
    assert sum(isinstance(m, NMQuantLinear) for m in q.modules()) == 3
    layer = q[0]
    assert not bool(layer.to_dense()[~pruned[0].nm_weight().mask()].any())
    x = torch.randn(5, 64)
    expect = x
    for mod in q:
        expect = (nn.functional.linear(expect, mod.to_dense(), mod.bias)
                  if isinstance(mod, NMQuantLinear) else mod(expect))
    torch.testing.assert_close(q(x), expect, rtol=1e-5, atol=1e-5)
    # bytes: fp32 dense > N:M fp32 > N:M int4
    assert weight_nbytes(q) < weight_nbytes(pruned) < weight_nbytes(dense)
    sd = q[2].state_dict()
    back = NMQuantLinear.from_state_dict(sd)
    assert torch.equal(back(torch.ones(2, 96)), q[2](torch.ones(2, 96)))


def test_quantize_model_dense_and_errors():
    m = _mlp()
    q = quantize_model(m, bits=8, include=lambda name, mod: name != "4")
    assert isinstance(q[0], QuantLinear) and isinstance(q[4], nn.Linear)
    assert isinstance(m[0], nn.Linear)  # the input model is untouched
    with pytest.raises(ValueError, match="layer '2': group=64 does not divide the width in_features=96"):
        quantize_model(m, bits=4, group=64)
    with pytest.raises(ValueError, match="no nn.Linear"):
        quantize_model(nn.ReLU(), bits=4)


def test_cached_weight_follows_the_buffers():
    """weight() is built once per set of buffers: in-place edits and loaded state dicts are seen,
    a replaced buffer rebuilds it, and a corrupted buffer still raises on the next call."""
    ql = QuantLinear.from_linear(nn.Linear(64, 8), bits=4, group=32)
    w = ql.weight()
    assert ql.weight() is w
    x = torch.randn(2, 64)
    ql.scales.mul_(2)  # in place: same tensors, the cached weight reads the new values
    torch.testing.assert_close(ql(x), nn.functional.linear(x, ql.to_dense(), ql.bias), rtol=1e-5, atol=1e-5)
    other = QuantLinear.from_linear(nn.Linear(64, 8), bits=4, group=32)
    ql.load_state_dict(other.state_dict())
    torch.testing.assert_close(ql(x), other(x))
    ql.scales = ql.scales.double().float().clone()  # a new tensor: rebuilt
    assert ql.weight() is not w and ql.weight().scales is ql.scales
    ql.codes = torch.zeros(8, 31, dtype=torch.uint8)  # wrong packed width
    with pytest.raises(ValueError, match="codes must be uint8 of shape"):
        ql(x)


def test_bound_call_path_matches_and_rebinds():
    """The light per-call path (bound once per weight) gives quant_matmul's result, and a replaced
    buffer, a changed impl or ``.to()`` drops the binding."""
    from kernels.quant import impls, quant_matmul

    torch.manual_seed(0)
    lin = nn.Linear(96, 40, bias=True)
    layer = QuantLinear.from_linear(lin, bits=4, group=32)
    x = torch.randn(3, 96)
    with torch.no_grad():
        y0 = layer(x)
        assert "_bound" in layer.__dict__ or not impls()["native"].available()
        torch.testing.assert_close(layer(x), quant_matmul(layer.weight(), x) + layer.bias)
        torch.testing.assert_close(y0, x @ layer.to_dense().T + layer.bias)
        other = QuantLinear.from_linear(nn.Linear(96, 40), bits=4, group=32)
        layer.codes = other.codes.clone()  # same shape, new values: must not reuse the old pointers
        assert "_bound" not in layer.__dict__
        torch.testing.assert_close(layer(x), x @ layer.to_dense().T + layer.bias)
        layer.impl = "reference"
        assert "_bound" not in layer.__dict__
        torch.testing.assert_close(layer(x), x @ layer.to_dense().T + layer.bias)
        layer.to(torch.float32)
        assert "_bound" not in layer.__dict__
        assert layer(torch.randn(70, 96)).shape == (70, 40)  # > 64 rows: the unbound path
