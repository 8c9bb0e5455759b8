"""Many-run canary audit: bounds on synthetic IN/OUT scores, bad input, and a tiny end-to-end stage."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from models import ModelSpec
from tasks.papers import dp_audit
from tasks.data_prep import DataParams, prepare
from tasks.audit import dp
from tasks.papers.dp_audit import dp_comparison
from tasks.audit.dpsgd import DPSGDParams, make_canaries, many_run_scores
from tasks.audit.mia import auc

DELTA = 1e-5
KEYS = [f"{k}_{s}" for s in dp.VALID_STRATEGIES for k in ("eps_cp", "eps_gdp")]


# ---- the bound on synthetic score samples ---------------------------------------------------
def test_gaussian_scores_bound_below_and_near_true_eps() -> None:
    # IN ~ N(1, 1), OUT ~ N(0, 1): exactly 1-GDP, true eps(1e-5) = 4.377
    true_eps = dp.gdp_to_eps(1.0, DELTA)
    out, inn = dp.gaussian_mechanism(10_000, 1.0, seed=0)
    b = dp.eps_many_run(inn, out, DELTA)
    assert all(0.0 <= b[k] <= true_eps for k in KEYS)
    # GDP route within 20 % of the truth at n = 1e4 (jax_privacy's auditing_test pattern)
    assert b["eps_gdp_bonferroni"] > 0.8 * true_eps and b["eps_gdp_split"] > 0.8 * true_eps
    assert b["mu_gdp_split"] <= 1.0 and b["eps_cp_split"] < b["eps_gdp_split"]
    small = dp.eps_many_run(*dp.gaussian_mechanism(200, 1.0, seed=0)[::-1], DELTA)
    assert small["eps_gdp_bonferroni"] < b["eps_gdp_bonferroni"]  # more runs, tighter bound


def test_gaussian_scores_bound_rarely_exceeds_truth() -> None:
    # 60 audits of R = 100 runs per arm on a 2-GDP mechanism: a 95 % bound may exceed the
    # truth in <= 5 % of audits; allow 10 % (binomial slack), and CP should essentially never
    true_eps = dp.gdp_to_eps(2.0, DELTA)
    over = {k: 0 for k in KEYS}
    for s in range(60):
        out, inn = dp.gaussian_mechanism(100, 2.0, seed=100 + s)
        b = dp.eps_many_run(inn, out, DELTA, seed=s)
        for k in KEYS:
            over[k] += b[k] > true_eps
    assert all(v <= 6 for v in over.values()), over


def test_identical_in_out_gives_zero() -> None:
    x = np.random.default_rng(0).normal(size=128)
    b = dp.eps_many_run(x, x.copy(), DELTA)
    assert all(b[k] == 0.0 for k in KEYS) and b["auc"] == 0.5
    out, inn = dp.gaussian_mechanism(2000, 0.0, seed=3)  # same distribution, different draws
    b = dp.eps_many_run(inn, out, DELTA)
    assert all(b[k] < 0.3 for k in KEYS)


def test_perfect_separation_hand_computed() -> None:
    # R = 64 per arm, every IN score above every OUT score. Bonferroni over T = 128 thresholds
    # gives each one-sided bound a = 0.05 / (2 * 128); at t = min(IN): tp = 64, fp = 0, so
    # TPR_lb = a^(1/64), FPR_ub = 1 - a^(1/64) and eps = ln((TPR_lb - delta) / FPR_ub) = 1.9465
    r = 64
    b = dp.eps_many_run(np.arange(r) + 1000.0, np.arange(r, dtype=float), DELTA)
    a = 0.05 / (2 * 2 * r)
    lb = a ** (1 / r)
    assert b["eps_cp_bonferroni"] == pytest.approx(math.log((lb - DELTA) / (1 - lb)), rel=1e-9)
    assert b["eps_cp_bonferroni"] == pytest.approx(1.9465, abs=1e-4)
    assert b["auc"] == 1.0 and 1.8 < b["eps_cp_split"] < 2.2
    assert b["eps_gdp_bonferroni"] > b["eps_cp_bonferroni"]  # GDP route tighter


def test_auc_matches_mia_auc() -> None:
    rng = np.random.default_rng(1)
    inn, out = np.round(rng.normal(0.5, 1, 50), 1), np.round(rng.normal(0, 1, 70), 1)  # with ties
    b = dp.eps_many_run(inn, out, DELTA)
    assert b["auc"] == pytest.approx(auc(np.r_[inn, out], np.r_[np.ones(50), np.zeros(70)].astype(bool)))
    assert (b["n_in"], b["n_out"]) == (50, 70)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(in_scores=[np.nan, 1.0]), "in_scores contains NaN"),
        (dict(out_scores=[]), "out_scores must be a non-empty"),
        (dict(delta=0.0), "delta must be in"),
        (dict(alpha=1.5), "alpha must be in"),
        (dict(strategies=("none",)), r"strategies \('none',\)"),
        (dict(strategies=("bonferroni", "magic")), "magic"),
    ],
)
def test_many_run_bad_input_raises(kwargs, match) -> None:
    args = dict(in_scores=[1.0, 2.0, 3.0], out_scores=[0.0, 1.0, 0.5], delta=DELTA) | kwargs
    with pytest.raises(ValueError, match=match):
        dp.eps_many_run(**args)


# ---- params and the training loop's guards ------------------------------------------------
def test_params_errors_name_key_and_value() -> None:
    with pytest.raises(ValueError, match=r"target epsilons must be > 0, got \[-1.0\]"):
        dp_audit.ManyRunAuditParams(target_eps=(4.0, -1.0))
    with pytest.raises(ValueError, match="n_models"):
        dp_audit.ManyRunAuditParams(n_models=2)
    with pytest.raises(ValueError, match="strategy"):
        dp_audit.ManyRunAuditParams(strategy="none")
    with pytest.raises(ValueError, match="canaries"):
        dp_audit.ManyRunAuditParams(canaries=3)  # extra="forbid"


def test_params_error_names_key_path() -> None:
    from flows.papers import discover
    from tasks.platform.errors import ParamsError
    from tasks.platform.params import load_all

    papers = discover()
    bad = {"dp_audit": {"dpsgd_many": {"n_models": 1}}}
    with pytest.raises(ParamsError, match=r"dp_audit\.dpsgd_many\.n_models") as e:
        load_all({n: p.params_model for n, p in papers.items()}, "smoke", overrides=bad)
    assert "1" in str(e.value)


@pytest.fixture(scope="module")
def digits():
    return prepare(DataParams(dataset="digits", val_fraction=0.3, test_fraction=0.15, max_samples=300))


def test_many_run_scores_guards(digits) -> None:
    p = DPSGDParams(target_eps=2.0, epochs=1, batch_size=64, model=ModelSpec(hidden=(8,)))
    can, _ = make_canaries(digits["val"], 2, 10, seed=0)
    with pytest.raises(ValueError, match="one canary row, got 2"):
        many_run_scores(p, digits["train"], can, 2, 10)
    # 128 rows -> 2 Poisson batches, 129 rows -> 3: the two arms would differ in sample rate
    with pytest.raises(ValueError, match="different Poisson sample rates with batch_size = 64"):
        many_run_scores(p, digits["train"].slice(0, 128), can.slice(0, 1), 2, 10)


# ---- tiny end-to-end of the stage and its report rows ---------------------------------------
def test_many_run_stage_end_to_end(digits) -> None:
    params = dp_audit.ManyRunAuditParams(
        target_eps=(2.0,), n_models=4, train_rows=60,
        dpsgd=DPSGDParams(epochs=2, batch_size=32, model=ModelSpec(hidden=(8,))),
    )
    out = dp_audit.dpsgd_many_run_stage(params, train=digits["train"], val=digits["val"], test=digits["test"])
    res = {r["target_eps"]: r for r in out["results"].to_pylist()}
    assert set(res) == {math.inf, 2.0}
    priv, free = res[2.0], res[math.inf]
    assert priv["eps_spent"] == pytest.approx(2.0, abs=0.05) and priv["noise_multiplier"] > 0
    assert free["noise_multiplier"] == 0.0 and free["eps_spent"] == math.inf
    for r in (priv, free):
        assert r["n_models"] == 4 and r["strategy"] == "split"
        assert r["eps_cp"] == r["eps_cp_split"] and r["eps_gdp"] == r["eps_gdp_split"]
        assert all(0.0 <= r[k] < math.inf for k in KEYS) and 0.0 <= r["auc"] <= 1.0
        assert 0.0 <= r["test_acc"] <= 1.0
    assert priv["eps_cp"] <= priv["eps_spent"] and priv["eps_gdp"] <= priv["eps_spent"]
    sc = out["scores"]
    assert sc.num_rows == 2 * 2 * 4 and sorted(set(sc.column("arm").to_pylist())) == ["in", "out"]
    assert np.all(np.isfinite(sc.column("score").to_numpy()))
    assert out["metrics"]["models_trained"] == 16 and out["metrics"]["wall_s"] > 0


def test_dp_comparison_verdicts() -> None:
    one = pa.Table.from_pylist([
        {"target_eps": math.inf, "eps_spent": math.inf, "eps_lb": 3.0, "m": 100},
        {"target_eps": 1.0, "eps_spent": 1.0, "eps_lb": 0.0, "m": 100},
        {"target_eps": 4.0, "eps_spent": 4.0, "eps_lb": 0.5, "m": 100},
    ])
    many = pa.Table.from_pylist([
        {"target_eps": t, "eps_spent": acc, "eps_cp": cp, "eps_gdp": g, "n_models": 64, "auc": 0.5}
        for t, acc, cp, g in ((math.inf, math.inf, 2.0, 11.0), (1.0, 1.0, 0.1, 0.2), (4.0, 4.0, 0.3, 4.5))
    ])
    rows = {r["target_eps"]: r for r in dp_comparison(one, many).to_pylist()}
    assert rows[math.inf]["verdict"] == "no DP"
    assert rows[1.0]["verdict"] == "consistent"
    assert rows[4.0]["verdict"] == "EXCEEDS accountant: many-run GDP"  # a bound above the accountant = a bug
    assert rows[4.0]["one_run_lb"] == 0.5 and rows[4.0]["models_per_arm"] == 64
