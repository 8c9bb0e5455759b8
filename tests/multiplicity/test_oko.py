"""OKO set loss on hand-computed sets; the set sampler's invariants."""

import math

import numpy as np
import pytest
import torch

from tasks.multiplicity import oko
from tasks.multiplicity.metrics import MultiplicityError


def test_hard_and_soft_loss_on_a_hand_computed_set():
    # one set, k = 1: two examples of class 0, one of class 2; C = 3
    logits = torch.tensor([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 2.0]]])
    labels = torch.tensor([[0, 0, 2]])
    z = [1.5, 0.5, 2.0]  # summed logits
    lse = math.log(sum(math.exp(v) for v in z))
    assert oko.oko_loss(logits, labels).item() == pytest.approx(lse - 1.5)
    # soft target (2/3, 0, 1/3)
    want = -(2 / 3 * (1.5 - lse) + 1 / 3 * (2.0 - lse))
    assert oko.oko_loss(logits, labels, soft=True).item() == pytest.approx(want)


def test_loss_is_differentiable_per_example():
    logits = torch.randn(4, 3, 5, requires_grad=True)
    labels = torch.tensor([[1, 1, 0], [2, 2, 3], [4, 4, 1], [0, 0, 2]])
    oko.oko_loss(logits, labels, soft=True).backward()
    assert logits.grad is not None and torch.all(torch.isfinite(logits.grad))


def test_make_sets_pairs_and_odd_classes():
    y = np.array([0, 0, 0, 1, 1, 2, 3])
    idx, pair = oko.make_sets(y, 200, k=2, rng=np.random.default_rng(0))
    assert idx.shape == (200, 4)
    assert np.all(y[idx[:, 0]] == pair) and np.all(y[idx[:, 1]] == pair) and np.all(idx[:, 0] != idx[:, 1])
    assert np.all(y[idx[:, 2:]] != pair[:, None])
    assert set(pair) <= {0, 1}  # classes 2 and 3 have one example: never a pair
    again, _ = oko.make_sets(y, 200, k=2, rng=np.random.default_rng(0))
    assert np.array_equal(idx, again)


def test_bad_sets_are_refused():
    with pytest.raises(MultiplicityError, match="share the pair class"):
        oko.oko_loss(torch.zeros(1, 3, 2), torch.tensor([[0, 1, 1]]))
    with pytest.raises(MultiplicityError, match="a class with >= 2"):
        oko.make_sets(np.array([0, 1, 2]), 5, 1, np.random.default_rng(0))


def test_temperature_fit_recovers_a_known_temperature():
    from tasks.papers.oko import fit_temperature

    g = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 5, generator=g) * 2
    y = torch.multinomial(torch.softmax(z, -1), 1, generator=g)[:, 0]
    assert fit_temperature(z * 3.0, y) == pytest.approx(3.0, rel=0.1)  # logits 3x too sharp -> T ~ 3
