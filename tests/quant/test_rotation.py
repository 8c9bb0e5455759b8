"""Rotations: orthogonality, a rotated full-precision tinylm computes the same logits, bad inputs, and the
synthetic outlier-layer check (rotation lowers W4A4 error only when outlier channels exist)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.charlm import VOCAB
from tests.quant.models import tinylm_with_norms
from tasks.quant.rotation import (
    fold_norms,
    hadamard,
    random_hadamard,
    random_orthogonal,
    rotate_model,
    synthetic_rotation_error,
)
from tasks.quant.tinylm import FakeQuantLinear, swap_linears




@pytest.mark.parametrize("n", [4, 16, 48])
def test_draws_are_orthogonal(n):
    g = torch.Generator().manual_seed(0)
    eye = torch.eye(n, dtype=torch.float64)
    for r in (random_orthogonal(n, g), random_hadamard(n, g)):
        assert (r @ r.T - eye).abs().max() < 1e-10
    if n in (4, 16):
        h = hadamard(n)
        assert (h.abs() - n**-0.5).abs().max() < 1e-12
    with pytest.raises(ValueError, match="power-of-2"):
        hadamard(12)


def test_rotated_full_precision_model_has_the_same_logits():
    m = tinylm_with_norms()
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, VOCAB, (3, 20), generator=g)
    with torch.no_grad():
        ref = m(x)
        assert (fold_norms(m)(x) - ref).abs().max() <= 1e-4
        r = rotate_model(m, random_hadamard(32, g), random_orthogonal(16, g))
        assert (r(x) - ref).abs().max() <= 1e-4
        # + the online Hadamard before down_proj (weight W R4, activation x R4 at run time)
        r4 = random_hadamard(48, g)
        down = {f"model.layers.{i}.mlp.down_proj": FakeQuantLinear(
            r.get_submodule(f"model.layers.{i}.mlp.down_proj").weight.double() @ r4, rotate=r4) for i in range(2)}
        assert (swap_linears(r, down)(x) - ref).abs().max() <= 1e-4
    assert not torch.equal(r.model.layers[0].self_attn.q_proj.weight, m.model.layers[0].self_attn.q_proj.weight)


def test_bad_rotations_are_named():
    m = tinylm_with_norms()
    with pytest.raises(ValueError, match=r"R1 must be \(32, 32\)"):
        rotate_model(m, torch.eye(16))
    with pytest.raises(ValueError, match=r"R2 must be \(16, 16\)"):
        rotate_model(m, torch.eye(32), torch.eye(8))
    with pytest.raises(ValueError, match="needs a tinylm"):
        rotate_model(nn.Linear(4, 4), torch.eye(4))  # type: ignore[arg-type]
    del m.model.layers[1].mlp.down_proj
    with pytest.raises(ValueError, match="no layer 'model.layers.1.mlp.down_proj'"):
        rotate_model(m, torch.eye(32))


def test_synthetic_check_rotation_helps_only_with_outliers():
    kw = dict(n=256, d=256, out=16, df=5, w_bits=4, a_bits=4, group=None)
    err = {}
    for outliers in (0, 4):
        for name in ("identity", "hadamard"):
            g = torch.Generator().manual_seed(0)
            rot = None if name == "identity" else random_hadamard(256, torch.Generator().manual_seed(9))
            err[outliers, name] = synthetic_rotation_error(rot, n_outliers=outliers, outlier_scale=20.0, generator=g, **kw)
    assert err[4, "hadamard"] < 0.3 * err[4, "identity"], err  # outlier channels: rotation fixes most of the error
    assert err[0, "hadamard"] > 0.5 * err[0, "identity"], err  # no outliers: little to fix


def test_smoothquant_preserves_the_function_and_tames_outlier_channels():
    from tasks.quant.rotation import smooth_scales
    from tasks.quant.fakequant import quant_act

    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 64, dtype=torch.float64, generator=g)
    x[:, :3] *= 40  # outlier channels
    w = torch.randn(16, 64, dtype=torch.float64, generator=g) / 8
    s = smooth_scales(x, w, 0.5)
    assert torch.allclose((x / s) @ (w * s).T, x @ w.T, atol=1e-9)
    err = lambda xx, ww: float(((quant_act(xx, 8) @ ww.T - x @ w.T) ** 2).sum() / ((x @ w.T) ** 2).sum())  # noqa: E731
    assert err(x / s, w * s) < 0.5 * err(x, w)
    with pytest.raises(ValueError, match="alpha"):
        smooth_scales(x, w, 1.5)
