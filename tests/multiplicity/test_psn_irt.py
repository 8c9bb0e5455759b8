"""PSN-IRT: parameter recovery on data simulated from a known 4PL model; 4PL algebra; bad input."""

import numpy as np
import pytest
from scipy import stats

from tasks.multiplicity import psn_irt as pi


def test_psn_irt_recovers_simulated_difficulty_and_ability():
    truth, y = pi.simulate_4pl(200, 400, seed=0)
    fit = pi.fit_psn_irt(y, pi.PSNParams(), seed=0)
    assert stats.spearmanr(fit.b, truth.b).statistic > 0.9
    assert stats.spearmanr(fit.theta, truth.theta).statistic > 0.95
    assert np.all(fit.a > 0) and np.all((fit.c >= 0) & (fit.c <= 0.5)) and np.all(fit.d > fit.c)
    assert abs(fit.theta.mean()) < 1e-9 and fit.theta.std() == pytest.approx(1.0, abs=1e-6)


def test_fit_is_deterministic_per_seed():
    _, y = pi.simulate_4pl(20, 30, seed=1)
    p = pi.PSNParams(epochs=20)
    a, b = pi.fit_psn_irt(y, p, seed=3), pi.fit_psn_irt(y, p, seed=3)
    assert np.array_equal(a.b, b.b) and np.array_equal(a.theta, b.theta)


def test_four_pl_probability_and_information_by_hand():
    m = pi.FourPL(theta=np.array([0.0, 1.0]), a=np.array([2.0]), b=np.array([1.0]), c=np.array([0.2]), d=np.array([0.9]))
    # at theta = b the curve is halfway between c and d
    assert m.prob()[1, 0] == pytest.approx(0.55)
    two = pi.FourPL(theta=np.zeros(1), a=np.array([1.5]), b=np.array([0.3]), c=np.zeros(1), d=np.ones(1))
    p = 1 / (1 + np.exp(1.5 * 0.3))
    assert two.information(np.zeros(1))[0, 0] == pytest.approx(1.5**2 * p * (1 - p))  # 2PL: a^2 P (1 - P)


def test_select_items_takes_the_most_informative():
    m = pi.FourPL(theta=np.zeros(5), a=np.array([0.2, 3.0, 1.0]), b=np.zeros(3), c=np.zeros(3), d=np.ones(3))
    assert pi.select_items(m, 1).tolist() == [1]
    with pytest.raises(pi.IRTInputError, match="k must lie in"):
        pi.select_items(m, 4)


def test_bad_response_matrices_are_refused():
    p = pi.PSNParams(epochs=1)
    with pytest.raises(pi.IRTInputError, match="0/1"):
        pi.fit_psn_irt([[0, 2], [1, 0]], p, seed=0)
    with pytest.raises(pi.IRTInputError, match="ragged"):
        pi.fit_psn_irt([[0, 1], [1]], p, seed=0)
    with pytest.raises(pi.IRTInputError, match="no cell"):
        pi.fit_psn_irt([[0, 1], [1, 0]], p, seed=0, mask=np.zeros((2, 2)))
    with pytest.raises(pi.IRTInputError, match="models >= 2"):
        pi.fit_psn_irt([[0, 1, 1]], p, seed=0)


def test_girth_baseline_block_by_block():
    from tasks.papers.psn_irt import _girth_2pl

    truth, y = pi.simulate_4pl(150, 40, seed=2)
    _, b_all = _girth_2pl(y, None)
    a_blk, b_blk = _girth_2pl(y, 15)  # 3 blocks of 14/13/13 items
    assert a_blk.shape == b_blk.shape == (40,) and np.all(np.isfinite(b_blk))
    # fixed N(0, 1) latent scale: the blocks agree with the joint fit and recover the difficulty ordering
    assert stats.spearmanr(b_blk, b_all).statistic > 0.95
    assert stats.spearmanr(b_blk, truth.b).statistic > 0.8
    assert not np.allclose(b_blk, b_all)  # the blocks really are separate fits
