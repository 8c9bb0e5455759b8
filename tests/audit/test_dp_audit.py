"""Tests for tasks/audit/dp.py: closed forms, anchors, validity on known mechanisms."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.audit import dp

DELTA = 1e-5
TRUE_EPS_MU1 = 4.377  # 1-GDP at delta 1e-5 (anchors_audit_eval.md, sec. 1.7)


# ---- closed forms -----------------------------------------------------------------------------
def test_gdp_to_eps_anchor_and_inverse() -> None:
    eps = dp.gdp_to_eps(1.0, DELTA)
    assert eps == pytest.approx(TRUE_EPS_MU1, abs=1e-3)
    assert dp.gdp_delta(eps, 1.0) == pytest.approx(DELTA, rel=1e-6)
    assert dp.gdp_to_eps(0.0, DELTA) == 0.0


def test_one_run_p_value_matches_two_public_implementations() -> None:
    # (m, r, v, eps, delta) = (1000, 100, 90, 1.0, 1e-5) -> 0.000841 (Privacy Meter = jax_privacy)
    assert dp.one_run_p_value(1000, 100, 90, 1.0, DELTA) == pytest.approx(0.000841, abs=5e-7)


def test_one_run_p_value_by_hand_small() -> None:
    # m=4, r=2, v=2, eps=0: q=1/2; P[Bin>=2]=1/4; windows: i=1 P[Bin=1]=1/2 -> 1/2,
    # i=2 P[0<=Bin<2]=3/4 -> 3/8; max = 1/2 -> p = 1/4 + 2*4*delta*1/2
    assert dp.one_run_p_value(4, 2, 2, 0.0, 0.01) == pytest.approx(0.25 + 0.04)


def test_eps_one_run_counts_is_supremum() -> None:
    e = dp.eps_one_run_counts(1000, 100, 90, DELTA)
    assert dp.one_run_p_value(1000, 100, 90, e, DELTA) < 0.05
    assert dp.one_run_p_value(1000, 100, 90, e + 1e-3, DELTA) >= 0.05
    assert dp.eps_one_run_counts(1000, 100, 50, DELTA) == 0.0  # chance-level guesses


def test_clopper_pearson_bounds_by_hand() -> None:
    # k = 0: upper = 1 - alpha^(1/n); k = n: lower = alpha^(1/n)
    assert dp.cp_upper(0, 10, 0.05) == pytest.approx(1 - 0.05 ** (1 / 10))
    assert dp.cp_lower(10, 10, 0.05) == pytest.approx(0.05 ** (1 / 10))
    assert dp.cp_lower(0, 10, 0.05) == 0.0 and dp.cp_upper(10, 10, 0.05) == 1.0


def test_cp_upper_coverage_by_simulation() -> None:
    rng = np.random.default_rng(0)
    p, n = 0.1, 200
    k = rng.binomial(n, p, size=4000)
    assert np.mean(dp.cp_upper(k, n, 0.05) >= p) >= 0.95


def test_gaussian_tradeoff_endpoints() -> None:
    assert dp.gaussian_tradeoff(0.0, 1.0) == pytest.approx(1.0)
    assert dp.gaussian_tradeoff(1.0, 1.0) == pytest.approx(0.0)
    assert dp.gaussian_tradeoff(0.3, 0.0) == pytest.approx(0.7)  # mu = 0: f(a) = 1 - a


# ---- the Gaussian mechanism anchor: eps 4.377 audits to ~4.1 (GDP) and ~2.0 (CP) ------------
@pytest.fixture(scope="module")
def gauss_1e4():
    return dp.gaussian_mechanism(10_000, 1.0, seed=0)  # (out = M(D), in = M(D'))


def test_gdp_and_cp_lower_bounds_on_gaussian(gauss_1e4) -> None:
    out, inn = gauss_1e4
    for strategy in ("bonferroni", "split"):
        g = dp.eps_gdp(inn, out, DELTA, strategy=strategy)
        c = dp.eps_clopper_pearson(inn, out, DELTA, strategy=strategy)
        assert 3.5 < g <= TRUE_EPS_MU1, (strategy, g)  # anchor 4.12 (uncorrected threshold)
        assert 1.5 < c <= TRUE_EPS_MU1, (strategy, c)  # anchor 2.01
        assert g > c  # GDP is much tighter than CP at equal n


def test_bounds_grow_with_samples() -> None:
    small = dp.eps_gdp(*dp.gaussian_mechanism(1000, 1.0, seed=1)[::-1], DELTA)
    large = dp.eps_gdp(*dp.gaussian_mechanism(20_000, 1.0, seed=1)[::-1], DELTA)
    assert small < large <= TRUE_EPS_MU1


def test_broken_mechanism_is_flagged(gauss_1e4) -> None:
    out, inn = dp.gaussian_mechanism(10_000, 1.0, seed=0, noise_scale=0.5)  # really 2-GDP
    assert dp.eps_gdp(inn, out, DELTA) > TRUE_EPS_MU1  # claimed 4.377 is refuted
    assert dp.eps_clopper_pearson(inn, out, DELTA) > 0.0


def test_null_mechanism_certifies_nothing() -> None:
    out, inn = dp.gaussian_mechanism(5000, 0.0, seed=3)
    assert dp.eps_clopper_pearson(inn, out, DELTA) < 0.2
    assert dp.eps_gdp(inn, out, DELTA) < 0.3


def test_uncorrected_strategy_can_overshoot() -> None:
    # Documented flaw of "none": the max over thresholds is not corrected, so it is
    # optimistic relative to the corrected bound on the same data.
    out, inn = dp.gaussian_mechanism(10_000, 1.0, seed=1)
    assert dp.eps_gdp(inn, out, DELTA, strategy="none") > dp.eps_gdp(inn, out, DELTA)


def test_one_run_audit_on_gaussian_canaries() -> None:
    rng = np.random.default_rng(0)
    m = 1000
    inc = rng.random(m) < 0.5
    scores = rng.normal(0, 1, m) + 4.0 * inc  # strong leakage: mu = 4
    res = dp.eps_one_run(scores, inc, DELTA)
    assert 0.5 < res["eps_lb"] <= dp.gdp_to_eps(4.0, DELTA)
    assert res["v"] <= res["r"] <= m
    weak = dp.eps_one_run(rng.normal(0, 1, m), inc, DELTA)
    assert weak["eps_lb"] < 0.5


# ---- conformal f-DP audit (arXiv 2503.12045) ----------------------------------------------
def _f1(a):
    return dp.gaussian_tradeoff(a, 1.0)


def test_conformal_audit_type_one_error_controlled() -> None:
    level = 0.05
    rej = [dp.conformal_fdp_audit(*dp.gaussian_mechanism(300, 1.0, s), _f1, level=level).reject for s in range(200)]
    # binomial tolerance: 200 audits at a true rate <= 0.05
    assert np.mean(rej) <= level + 3 * np.sqrt(level * (1 - level) / 200)


def test_conformal_audit_flags_half_noise_with_rising_power() -> None:
    power = []
    for n in (20, 60, 300):
        rej = [
            dp.conformal_fdp_audit(*dp.gaussian_mechanism(n, 1.0, s, noise_scale=0.5), _f1).reject
            for s in range(100)
        ]
        power.append(np.mean(rej))
    assert power[0] <= power[1] <= power[2]
    assert power[2] >= 0.9


def test_conformal_audit_result_fields() -> None:
    r = dp.conformal_fdp_audit(*dp.gaussian_mechanism(500, 1.0, 0), _f1, alpha=0.2)
    assert 0 <= r.p_value <= 1 and r.alpha == 0.2 and r.f_alpha == pytest.approx(_f1(0.2))


def test_tradeoff_band_covers_true_curve() -> None:
    alphas = np.linspace(0.05, 0.95, 10)
    truth = _f1(alphas)
    cover = []
    for s in range(60):
        b = dp.tradeoff_band(*dp.gaussian_mechanism(1000, 1.0, s), alphas, level=0.1)
        assert np.all(b["lower"] <= b["upper"] + 1e-12)
        cover.append(np.all((b["lower"] <= truth) & (truth <= b["upper"])))
    assert np.mean(cover) >= 0.9


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: dp.eps_gdp([np.nan, 1.0], [0.0], DELTA), "in_scores contains NaN"),
        (lambda: dp.eps_gdp([1.0], [], DELTA), "out_scores must be a non-empty"),
        (lambda: dp.eps_gdp([1.0], [0.0], DELTA, strategy="magic"), "unknown threshold strategy"),
        (lambda: dp.gdp_to_eps(1.0, 0.0), "delta must be in"),
        (lambda: dp.one_run_p_value(10, 5, 6, 1.0, DELTA), "v <= r <= m"),
        (lambda: dp.eps_one_run([1.0, 2.0], [True], DELTA), "equal-length"),
        (lambda: dp.accountant_epsilon(1.0, 0.1, 10, DELTA, "moments"), "unknown accountant"),
    ],
)
def test_bad_input_raises(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()


# ---- accounting pinned to Opacus's golden values -------------------------------------------
def test_accountant_golden_values() -> None:
    # opacus/tests/accountants_test.py: sigma 1.5, q 0.04, 2250 steps, delta 1e-5
    assert dp.accountant_epsilon(1.5, 0.04, 2250, DELTA, "rdp") == pytest.approx(7.32911117143, rel=1e-6)
    assert dp.accountant_epsilon(1.5, 0.04, 2250, DELTA, "prv") == pytest.approx(6.7774, abs=0.01)
    with pytest.warns(UserWarning):
        g = dp.accountant_epsilon(1.5, 0.04, 2250, DELTA, "gdp")
    assert 6.59 < g < 6.61
    assert dp.noise_multiplier_for(8.0, DELTA, 0.04, 2250) == pytest.approx(1.416, abs=5e-4)
