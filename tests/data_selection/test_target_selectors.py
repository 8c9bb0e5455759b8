"""GIO, CoLoR-Filter and the weak-supervision selectors on hand-checkable pools."""

import numpy as np
import pytest

from tasks.data_selection.color_filter import color_scores
from tasks.data_selection.gio import gio_path, kl_knn
from tasks.data_selection.selection import Pool, select
from tasks.data_selection.weak_supervision import inclusion_probabilities, systematic_sample
from tasks.platform.errors import ReprolabError


def _gauss_toy(seed=0):
    rng = np.random.default_rng(seed)
    # pool: 300 points near the target's mean + 700 spread far and wide; target N([3, 4], 0.5 I)
    pool = np.r_[rng.normal([3, 4], 0.7, (300, 2)), rng.uniform(-6, 10, (700, 2))]
    target = rng.normal([3, 4], np.sqrt(0.5), (100, 2))
    return Pool(np.arange(1000), {"features": pool}), Pool(np.arange(100), {"features": target})


def test_gio_kl_decreases_on_gaussian_toy_and_stops_when_it_rises():
    pool, target = _gauss_toy()
    x, t = pool.view("features"), target.view("features")
    s = select(pool, 400, selector="gio", target=target, seed=0, patience=3)
    # fewer picks than the budget: it stopped
    assert 5 < len(s.ids) < 400
    # scores are the KL estimate after each pick (after the k-point random start): it went down ...
    assert s.scores[-1] < s.scores[4] - 1.0
    # ... and equals the estimator recomputed from scratch on the selected set
    assert s.scores[-1] == pytest.approx(kl_knn(t, x[s.ids], 5), rel=1e-9)
    # picked points sit in the target's region far more often than the pool's share (30 %)
    assert np.mean(np.linalg.norm(x[s.ids] - [3, 4], axis=1) < 2.0) > 0.7
    # the stop: the unconstrained path from the same start rises right after the kept prefix
    picks, kls = gio_path(x, t, 400, np.arange(1000), np.array([], int), np.random.default_rng(0), patience=None)
    n = len(s.ids)
    assert picks[:n] == s.ids.tolist()
    assert all(kls[j] > kls[j - 1] for j in range(n, n + 4))
    # patience 0 = stop at the first rise: every kept step is a non-increase
    s0 = select(pool, 400, selector="gio", target=target, seed=0, patience=0)
    assert np.all(np.diff(s0.scores[4:]) <= 0) and len(s0.ids) <= n


def test_gio_bad_input_named():
    pool, target = _gauss_toy()
    with pytest.raises(ReprolabError, match="non-empty target set"):
        select(pool, 10, selector="gio", target=None)
    with pytest.raises(ReprolabError, match="budget 2000 is larger"):
        select(pool, 2000, selector="gio", target=target)
    with pytest.raises(ReprolabError, match="more than k=5 target points"):
        select(pool, 10, selector="gio", target=Pool(np.arange(3), {"features": np.zeros((3, 2))}))
    with pytest.raises(ReprolabError, match="same width"):
        select(pool, 10, selector="gio", target=Pool(np.arange(20), {"features": np.zeros((20, 3))}))


def _ngram_losses(texts, train, order=3):
    """Per-text mean NLL (nats/char) of an add-one smoothed character trigram model fitted on ``train``."""
    from collections import Counter

    ctx, full = Counter(), Counter()
    for t in train:
        t = " " * (order - 1) + t
        for i in range(order - 1, len(t)):
            ctx[t[i - order + 1:i]] += 1
            full[t[i - order + 1:i + 1]] += 1
    out = []
    for t in texts:
        t = " " * (order - 1) + t
        nll = [-np.log((full[t[i - order + 1:i + 1]] + 1) / (ctx[t[i - order + 1:i]] + 96))
               for i in range(order - 1, len(t))]
        out.append(float(np.mean(nll)))
    return np.array(out)


def test_color_scores_rank_target_like_text_first():
    target_like = [f"the cat sat on the mat number {i} and the dog sat too" for i in range(20)]
    generic = [f"def f{i}(x): return x * {i} + y[{i}] - z" for i in range(20)] + \
              [f"SELECT a{i}, b FROM t WHERE c > {i}" for i in range(20)]
    pool_texts = generic[:20] + target_like[:10] + generic[20:]
    prior_train = generic[::2] + target_like[10:12]      # generic data, little of the target
    cond_train = prior_train + target_like[12:]         # "fine-tuned" on target-domain text
    prior, cond = _ngram_losses(pool_texts, prior_train), _ngram_losses(pool_texts, cond_train)
    s = color_scores(prior, cond)
    top = np.argsort(-s)[:10]
    assert set(top) == set(range(20, 30))  # the 10 target-like texts come first
    pool = Pool(np.arange(len(pool_texts)), {"prior_loss": prior, "conditional_loss": cond})
    sel = select(pool, 10, selector="color_filter", tau=5.0, seed=0)  # tau*budget >= pool: every candidate
    assert set(sel.ids.tolist()) == set(range(20, 30)) and np.all(np.diff(sel.scores) <= 0)
    # tau = 1: a random subset of exactly budget candidates (no filtering)
    r = select(pool, 10, selector="color_filter", tau=1.0, seed=3)
    assert len(r.ids) == 10 and len(set(r.ids) & set(range(20, 30))) < 10


def test_color_filter_bad_input_named():
    pool = Pool(np.arange(4), {"prior_loss": np.array([1.0, np.nan, 2, 3]), "conditional_loss": np.ones(4)})
    with pytest.raises(ReprolabError, match="'prior_loss' has a non-finite value"):
        select(pool, 2, selector="color_filter")
    with pytest.raises(ReprolabError, match="NaN"):
        color_scores(np.array([1.0, np.nan]), np.ones(2))
    ok = Pool(np.arange(4), {"prior_loss": np.ones(4), "conditional_loss": np.ones(4)})
    with pytest.raises(ReprolabError, match="tau must be >= 1"):
        select(ok, 2, selector="color_filter", tau=0.5)
    with pytest.raises(ReprolabError, match="budget 5 is larger"):
        select(ok, 5, selector="color_filter")


def test_ipw_weights_are_inverse_inclusion_probabilities():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.99, 500)
    pool = Pool(np.arange(1000, 1500), {"surrogate_probs": p})
    pi = inclusion_probabilities(np.maximum(p * (1 - p), 1e-6) ** 2.0, 100)
    assert pi.sum() == pytest.approx(100) and pi.max() <= 1.0
    s = select(pool, 100, selector="weak_uncertainty", alpha=2.0, reweight=True, seed=1)
    assert len(s.ids) == 100
    np.testing.assert_allclose(s.scores, 1.0 / pi[s.ids - 1000], rtol=1e-12)
    u = select(pool, 100, selector="weak_uncertainty", alpha=2.0, reweight=False, seed=1)
    assert np.array_equal(u.ids, s.ids) and np.all(u.scores == 1.0)
    # systematic sampling: the empirical inclusion frequency matches pi (4000 draws)
    counts = np.zeros(500)
    g = np.random.default_rng(2)
    for _ in range(4000):
        counts[systematic_sample(pi, g)] += 1
    assert np.abs(counts / 4000 - pi).max() < 0.04


def test_inclusion_probabilities_cap_at_one():
    pi = inclusion_probabilities(np.array([100.0, 1, 1, 1, 1]), 3)
    np.testing.assert_allclose(pi, [1.0, 0.5, 0.5, 0.5, 0.5])


def test_weak_influence_and_bad_input():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    p = 1 / (1 + np.exp(-x @ np.array([2.0, -1, 0, 0.5])))
    pool = Pool(np.arange(300), {"features": x, "surrogate_probs": p})
    s = select(pool, 50, selector="weak_influence", seed=0)
    assert len(s.ids) == 50 and np.all(s.scores >= 1.0)  # 1/pi >= 1
    bad = Pool(np.arange(300), {"features": x, "surrogate_probs": np.where(np.arange(300) == 7, np.nan, p)})
    with pytest.raises(ReprolabError, match="'surrogate_probs' has a non-finite value"):
        select(bad, 50, selector="weak_influence")
    with pytest.raises(ReprolabError, match="budget 301 is larger"):
        select(pool, 301, selector="weak_uncertainty")
