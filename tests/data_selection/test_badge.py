"""BADGE on hand-checkable pools: the gradient embedding, k-means++ seeding, the degenerate pool."""

import numpy as np
import pytest
import torch

from tasks.data_selection.badge import badge_embeddings, badge_kmeanspp
from tasks.data_selection.selection import Pool, select
from tasks.platform.errors import ReprolabError


def test_embedding_equals_hand_computed_value_and_the_last_layer_gradient():
    probs = np.array([[0.7, 0.2, 0.1]])
    h = np.array([[1.0, 2.0]])
    # ŷ = 0: a = p - onehot(0) = (-0.3, 0.2, 0.1); g = a ⊗ h, class-major
    np.testing.assert_allclose(badge_embeddings(probs, h), [[-0.3, -0.6, 0.2, 0.4, 0.1, 0.2]], atol=1e-15)
    # the same as autograd's d CE(W h, ŷ) / d W for logits whose softmax is probs
    rng = np.random.default_rng(0)
    hx = torch.tensor(rng.normal(size=(5, 4)))
    w = torch.tensor(rng.normal(size=(3, 4)), requires_grad=True)
    logits = hx @ w.T
    p = torch.softmax(logits, -1)
    g = badge_embeddings(p.detach().numpy(), hx.numpy())
    for i in range(5):
        w.grad = None
        torch.nn.functional.cross_entropy(logits[i:i + 1], p[i:i + 1].argmax(-1)).backward(retain_graph=True)
        np.testing.assert_allclose(g[i], w.grad.numpy().reshape(-1), atol=1e-12)


def _reference(probs, h, budget, seed):
    """k-means++ the long way: materialised embeddings, difference-form distances, same RNG calls."""
    g = badge_embeddings(probs, h)
    rng = np.random.default_rng(seed)
    picks = [int(np.argmax((g ** 2).sum(1)))]
    while len(picks) < budget:
        d2 = np.min(((g[:, None, :] - g[None, picks, :]) ** 2).sum(-1), axis=1)
        d2[picks] = 0.0
        picks.append(int(rng.choice(len(g), p=d2 / d2.sum())))
    return picks


def _pool(n=200, k=4, d=6, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs, rng.normal(size=(n, d))


def test_factored_kmeanspp_equals_the_materialised_reference_and_is_seeded():
    probs, h = _pool()
    picks, d2 = badge_kmeanspp(probs, h, np.arange(len(h)), 30, np.random.default_rng(3))
    assert picks.tolist() == _reference(probs, h, 30, 3)
    assert np.unique(picks).size == 30 and np.all(d2 > 0)
    g = badge_embeddings(probs, h)
    assert picks[0] == int(np.argmax((g ** 2).sum(1))) and d2[0] == pytest.approx((g[picks[0]] ** 2).sum())
    pool = Pool(np.arange(1000, 1200), {"probs": probs, "features": h})
    a, b = select(pool, 30, selector="badge", seed=7), select(pool, 30, selector="badge", seed=7)
    assert a.ids.tolist() == b.ids.tolist()
    assert select(pool, 30, selector="badge", seed=8).ids.tolist() != a.ids.tolist()
    # labelled examples are never picked; the first pick is the largest-norm unlabelled one
    lab = pool.ids[picks[:5]]
    c = select(pool, 10, selector="badge", labelled=lab, seed=7)
    assert not np.isin(c.ids, lab).any()
    norms = (g ** 2).sum(1)
    norms[picks[:5]] = -1
    assert c.ids[0] == pool.ids[int(np.argmax(norms))]


def test_picks_spread_over_clusters_the_origin_included():
    rng = np.random.default_rng(1)
    centres = np.array([[10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0], [-10.0, -10.0, 0]])
    h = np.repeat(centres, 25, axis=0) + rng.normal(scale=0.1, size=(100, 3))
    probs = np.tile([0.6, 0.4], (100, 1))
    probs[::5] = [1.0, 0.0]  # confident: zero gradient embedding, a fifth cluster at the origin
    pool = Pool(np.arange(100), {"probs": probs, "features": h})
    for seed in range(10):
        s = select(pool, 5, selector="badge", seed=seed)
        cluster = np.where(s.ids % 5 == 0, 4, s.ids // 25)
        assert sorted(cluster.tolist()) == [0, 1, 2, 3, 4]  # one per cluster
        assert s.ids[0] % 5 != 0  # the first pick has the largest norm, never a zero embedding


def test_all_zero_embeddings_fall_back_to_uniform_draws_scored_zero():
    probs = np.tile([1.0, 0.0, 0.0], (20, 1))  # a saturated model: every gradient embedding is 0
    h = np.random.default_rng(0).normal(size=(20, 3))
    pool = Pool(np.arange(20), {"probs": probs, "features": h})
    a = select(pool, 8, selector="badge", seed=4)
    assert np.unique(a.ids).size == 8 and np.all(a.scores == 0.0)
    assert a.ids.tolist() == select(pool, 8, selector="badge", seed=4).ids.tolist()
    # two nonzero embeddings and 18 zero ones (three distinct points): once 3, 11 and one zero
    # embedding are centres, every D² left is 0 and the rest is drawn uniformly, scored 0
    probs[3], probs[11] = [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]
    for seed in range(5):
        b = select(Pool(np.arange(20), {"probs": probs, "features": h}), 6, selector="badge", seed=seed)
        assert b.ids[0] in (3, 11) and {3, 11} <= set(b.ids[:3].tolist())
        assert np.all(b.scores[:3] > 0) and np.all(b.scores[3:] == 0) and np.unique(b.ids).size == 6


def test_bad_views_are_named():
    probs, h = _pool(10)
    with pytest.raises(ReprolabError, match="'badge' needs pool view 'features'"):
        select(Pool(np.arange(10), {"probs": probs}), 2, selector="badge")
    with pytest.raises(ReprolabError, match="badge needs probs \\(n, k\\) and features \\(n, d\\)"):
        select(Pool(np.arange(10), {"probs": probs[:, 0], "features": h}), 2, selector="badge")
    bad = probs.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ReprolabError, match="non-finite"):
        select(Pool(np.arange(10), {"probs": bad, "features": h}), 2, selector="badge")
