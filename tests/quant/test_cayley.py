"""Learned rotations (Cayley SGD): the step stays orthogonal and descends, a learned-rotation full-precision tinylm
computes the original logits, the straight-through training net is the evaluated W4A4(KV4) net, bad inputs are named."""

from __future__ import annotations

import itertools

import pytest
import torch

from models.charlm import VOCAB
from tests.quant.models import SPEC, tinylm_with_norms
from tasks.quant.cayley import cayley_step, learn_rotations, orth_error
from tasks.quant.fakequant import WeightQuant
from tasks.quant.rotation import draw_r124, random_orthogonal, rotate_model, w4a4_layers
from tasks.quant.tinylm import bits_per_char, swap_linears, with_kv_quant

FMT = WeightQuant(bits=4, group=None, symmetric=True)



def _tokens(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n, 17), generator=torch.Generator().manual_seed(seed))


def test_cayley_step_stays_orthogonal_and_descends():
    g = torch.Generator().manual_seed(0)
    r = random_orthogonal(12, g)
    a = torch.randn(12, 12, dtype=torch.float64, generator=g)
    target = torch.linalg.matrix_exp(a - a.T) @ r  # same connected component (a Cayley step keeps det R)
    loss = [float(((r - target) ** 2).sum())]
    for _ in range(60):  # f(R) = ||R - T||^2, gradient 2 (R - T)
        r = cayley_step(r, 2 * (r - target), 0.5)
        loss.append(float(((r - target) ** 2).sum()))
        assert orth_error(r) < 1e-5
    assert loss[-1] < 0.05 * loss[0] and all(b <= a + 1e-9 for a, b in itertools.pairwise(loss))
    for _ in range(200):  # large random gradients: still on the manifold
        r = cayley_step(r, 100 * torch.randn(12, 12, dtype=torch.float64, generator=g), 1.5)
    assert orth_error(r) < 1e-5


def test_learned_rotation_keeps_the_full_precision_logits():
    m = tinylm_with_norms()
    r1, r2, r4 = draw_r124(SPEC, "hadamard", torch.Generator().manual_seed(1))
    calib = _tokens(8)
    l1, l2, curve = learn_rotations(m, calib, r1=r1, r2=r2, r4=r4, fmt=FMT, act_bits=4, kv_bits=4, steps=4, lr=1.5,
                                    batch_size=4)
    assert (l1 - r1).abs().max() > 1e-3 and (l2 - r2).abs().max() > 1e-3  # it moved
    assert orth_error(l1) < 1e-5 and orth_error(l2) < 1e-5 and len(curve) == 6
    x = _tokens(3, 1)[:, :-1]
    with torch.no_grad():
        assert (rotate_model(m, l1, l2)(x) - m(x)).abs().max() <= 1e-4


@pytest.mark.parametrize("kv", [None, 4])
def test_training_net_is_the_evaluated_net(kv):
    """At steps = 0 the straight-through loss is the W4A4(KV4) held-out loss of the merged, RTN-quantized model."""
    m = tinylm_with_norms()
    r1, r2, r4 = draw_r124(SPEC, "hadamard", torch.Generator().manual_seed(2))
    calib = _tokens(8)
    l1, _, curve = learn_rotations(m, calib, r1=r1, r2=r2, r4=r4, fmt=FMT, act_bits=4, kv_bits=kv, steps=0)
    assert torch.equal(l1, r1.double()) and len(curve) == 2 and curve[0] == curve[1]
    rot = rotate_model(m, r1, r2)
    layers = w4a4_layers(rot, FMT, 4, 1.0, r4)
    layers = layers if kv is None else with_kv_quant(rot, layers, kv)
    assert curve[0] == pytest.approx(bits_per_char(swap_linears(rot, layers), calib), abs=2e-3)


def test_bad_inputs_are_named_before_any_work():
    m = tinylm_with_norms()
    r1, r2, r4 = draw_r124(SPEC, "orth", torch.Generator().manual_seed(3))
    kw = dict(r1=r1, r2=r2, r4=r4, fmt=FMT, act_bits=4)
    calib = _tokens(4)
    for bad, needle in ((dict(steps=-1), "steps must be >= 0"), (dict(lr=-0.1), "learning rate must be > 0"),
                        (dict(lr=0.0), "learning rate must be > 0"), (dict(batch_size=0), "batch_size >= 1"),
                        (dict(r1=torch.eye(16)), r"R1 must be \(32, 32\)"), (dict(r4=torch.eye(8)), r"R4 must be \(48, 48\)"),
                        (dict(r1=2 * torch.eye(32)), "initial R1 is not orthogonal")):
        with pytest.raises(ValueError, match=needle):
            learn_rotations(m, calib, **{**kw, **bad})
    with pytest.raises(ValueError, match="learning rate"):
        cayley_step(r1, r1, -1.0)
    del m.model.layers[1].mlp.down_proj
    with pytest.raises(ValueError, match="no layer 'model.layers.1.mlp.down_proj'"):
        learn_rotations(m, calib, **kw)
    with pytest.raises(ValueError, match="needs a tinylm"):
        learn_rotations(torch.nn.Linear(4, 4), calib, **kw)  # type: ignore[arg-type]
