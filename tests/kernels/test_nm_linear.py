"""NMLinear: forward/backward parity with a masked dense Linear, serialisation, model conversion."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from kernels.nm import magnitude_mask
from models.nm_linear import NMLinear, convert_linear, sparsify_model
from tests.kernels.conftest import assert_really_nm


def masked_pair(out_features, in_features, n, m, v, seed=0):
    torch.manual_seed(seed)
    dense = nn.Linear(in_features, out_features)
    mask = magnitude_mask(dense.weight.detach(), n, m, v)
    with torch.no_grad():
        dense.weight.mul_(mask)
    return dense, mask


@pytest.mark.parametrize("impl", ["reference", "cpu", "triton"])
@pytest.mark.parametrize("n,m,v", [(2, 4, 1), (1, 8, 32), (12, 32, 32)])
def test_forward_backward_match_masked_dense(impl, n, m, v):
    dense, mask = masked_pair(40, 2 * m, n, m, v)
    layer = convert_linear(dense, mask, n=n, m=m, v=v, impl=impl, strict=True)
    assert_really_nm(layer.to_dense().detach(), n, m, v)
    x = torch.randn(2, 3, 2 * m)
    xd, xs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    yd, ys = dense(xd), layer(xs)
    torch.testing.assert_close(ys, yd)
    g = torch.randn_like(yd)
    (yd * g).sum().backward()
    (ys * g).sum().backward()
    torch.testing.assert_close(xs.grad, xd.grad)
    torch.testing.assert_close(layer.values.grad, dense.weight.grad[mask].view_as(layer.values))
    torch.testing.assert_close(layer.bias.grad, dense.bias.grad)


def test_training_step_keeps_pattern():
    dense, mask = masked_pair(32, 16, 2, 4, 32)
    layer = convert_linear(dense, mask, n=2, m=4, v=32)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    before = layer.to_dense().detach().clone()
    layer(torch.randn(8, 16)).pow(2).mean().backward()
    opt.step()
    after = layer.to_dense().detach()
    assert not torch.equal(before, after)
    assert torch.equal(after != 0, mask)


def test_state_dict_safetensors_round_trip(tmp_path):
    dense, mask = masked_pair(33, 16, 1, 8, 32)
    layer = convert_linear(dense, mask, n=1, m=8, v=32)
    path = tmp_path / "layer.safetensors"
    save_file({f"fc.{k}": t for k, t in layer.state_dict().items()}, str(path))
    back = NMLinear.from_state_dict(load_file(str(path)), prefix="fc.")
    x = torch.randn(4, 16)
    torch.testing.assert_close(back(x), layer(x))
    other = convert_linear(nn.Linear(16, 33), n=1, m=8, v=32)
    other.load_state_dict(layer.state_dict())
    torch.testing.assert_close(other(x), layer(x))
    with pytest.raises(ValueError, match="nmv"):
        convert_linear(nn.Linear(16, 33), n=2, m=8, v=32).load_state_dict(layer.state_dict())


def test_strict_rejects_dense_weights_and_dtype_cast():
    with pytest.raises(ValueError, match="non-zero entries fall outside"):
        convert_linear(nn.Linear(8, 4), n=2, m=4, strict=True)
    layer = convert_linear(nn.Linear(8, 4), n=2, m=4).to(torch.bfloat16)
    assert layer.values.dtype == torch.bfloat16 and layer.indices.dtype == torch.uint8
    assert layer(torch.randn(2, 8, dtype=torch.bfloat16)).dtype == torch.bfloat16
    with pytest.raises(TypeError, match="nn.Linear"):
        convert_linear(nn.Conv1d(1, 1, 1), n=2, m=4)


def test_sparsify_model_swaps_eligible_linears():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10), nn.ReLU(), nn.Linear(10, 3))
    sparse = sparsify_model(model, 2, 4, v=1, include=lambda name, lin: name != "4")
    assert isinstance(sparse[0], NMLinear) and isinstance(sparse[2], NMLinear)
    assert isinstance(sparse[4], nn.Linear) and not isinstance(model[0], NMLinear)
    # equals the model with magnitude-masked weights
    with torch.no_grad():
        for i in (0, 2):
            model[i].weight.mul_(magnitude_mask(model[i].weight, 2, 4))
    x = torch.randn(5, 16)
    torch.testing.assert_close(sparse(x), model(x))
    with pytest.raises(ValueError, match="not converted"):
        sparsify_model(model, 2, 4, masks={"4": torch.ones(3, 10, dtype=torch.bool)})
    with pytest.raises(ValueError, match="no nn.Linear"):
        sparsify_model(nn.Sequential(nn.Linear(3, 3)), 2, 4)
