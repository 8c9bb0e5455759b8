"""GLD (InfiGFusion): graph construction and the sorting-based GW approximation vs exact GW."""

import pytest
import torch

from tasks.distill.losses import gld as G


def test_coactivation_graph_hand_case():
    # one sample, probabilities (0.5, 0.3, 0.2) after softmax; top-2 keeps (0.5, 0.3, 0)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    g = G.coactivation_graph(logits, top_k=2)
    raw = torch.tensor([[0.25, 0.15, 0.0], [0.15, 0.09, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(g, raw / raw.sum())
    assert torch.equal(g, g.T)


def test_gw_sort_zero_for_a_relabelled_copy():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(6, 6, generator=g)
    a = a + a.T
    perm = torch.randperm(6, generator=g)
    assert G.gw_sort(a, a[perm][:, perm]).item() == pytest.approx(0.0, abs=1e-12)
    assert G.gw_sort(a, a + 0.1).item() > 0


def test_gw_sort_is_an_upper_bound_close_to_exact_gw_on_small_graphs():
    # teacher/student graphs: a perturbed, *relabelled* copy, so the identity matching is wrong.
    # exact reference: brute force over all permutation couplings (n = 6); POT's solver too.
    g = torch.Generator().manual_seed(1)
    ratios, vs_random, vs_pot = [], [], []
    for _ in range(6):
        logits = torch.randn(32, 6, generator=g) * 2
        a = G.coactivation_graph(logits, top_k=3).double()
        b = G.coactivation_graph(logits + 0.5 * torch.randn(32, 6, generator=g), top_k=3).double()
        p = torch.randperm(6, generator=g)
        b = b[p][:, p]
        approx, best = G.gw_sort(a, b).item(), G.gw_best_permutation(a, b)
        assert approx >= best - 1e-15  # a permutation coupling is feasible: an upper bound
        ratios.append(approx / best)
        perms = [torch.randperm(6, generator=g) for _ in range(50)]
        vs_random.append(approx / (sum(((a - b[q][:, q]) ** 2).mean().item() for q in perms) / 50))
        vs_pot.append(approx / G.gw_exact_pot(a.numpy(), b.numpy()))
    ratios.sort()
    assert ratios[len(ratios) // 2] < 2.0  # median within 2x of the best permutation
    assert max(vs_random) < 0.5  # far better than an arbitrary matching
    assert min(vs_pot) > 0.5 and max(vs_pot) < 2.0  # same scale as POT's local solver


def test_gld_loss_is_differentiable_and_zero_weight_is_plain_kd():
    g = torch.Generator().manual_seed(2)
    s = torch.randn(8, 5, generator=g).requires_grad_()
    t1, t2 = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    y = torch.randint(0, 5, (8,), generator=g)
    loss = G.gld(s, y, [t1, t2], gld_weight=1.0, top_k=3)
    loss.backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    from tasks.distill.losses.kd import kd

    base = G.gld(s, y, [t1, t2], gld_weight=0.0).item()
    assert base == pytest.approx(kd(s, y, [(t1 + t2) / 2]).item(), rel=1e-6)
    assert loss.item() > base


def test_gw_sort_shape_errors():
    with pytest.raises(ValueError, match="two square graphs"):
        G.gw_sort(torch.zeros(3, 3), torch.zeros(4, 4))
