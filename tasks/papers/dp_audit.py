"""dp_audit: what this paper alone computes (Gaussian-mechanism, DP-SGD one-run and many-run audits).

Its stage cores and params, and its report; the DP auditing science (bounds, canaries,
threshold strategies) lives in :mod:`tasks.audit.dp` and :mod:`tasks.audit.dpsgd`.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from models import ModelSpec
from tasks.audit import dp
from tasks.audit.dpsgd import DPSGDParams, canary_audit, make_canaries, many_run_scores
from tasks.evaluation.seeds import claims_metrics
from tasks.platform.params import Limit, Seed, SetOf
from tasks.platform.report import Claim, Report, report_outputs
from tasks.train import num_classes, torch_threads


class GaussianAuditParams(BaseModel):
    """Params of the known-mechanism DP audit (Gaussian mechanism, correct and half-noise).

    Attributes:
        mu: GDP parameter of the correct mechanism (mu = 1 -> eps 4.377 at delta 1e-5).
        delta: delta at which epsilon is reported.
        significance: 1 - confidence of the epsilon lower bounds.
        sample_sizes: numbers of in and out samples for the epsilon bounds.
        strategies: threshold strategies compared (see ``dp_audit.THRESHOLD_STRATEGIES``).
        conformal_sizes: sample budgets of the conformal f-DP audit (type I / power).
        conformal_alpha: type-I level alpha of the conformal threshold test.
        level: significance of the conformal audit and of the trade-off band.
        repeats: independent audits per budget (type-I rate and power).
        band_n: samples per side for the trade-off band; band_repeats: its coverage runs.
        seed: base seed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mu: float = Field(default=1.0, gt=0.0)
    delta: float = Field(default=1e-5, gt=0.0, lt=1.0)
    significance: float = Field(default=0.05, gt=0.0, lt=1.0)
    sample_sizes: SetOf[int] = (1000, 10000)
    strategies: SetOf[str] = ("bonferroni", "split", "none")
    conformal_sizes: SetOf[int] = (20, 60, 300)
    conformal_alpha: float = Field(default=0.1, gt=0.0, lt=1.0)
    level: float = Field(default=0.05, gt=0.0, lt=1.0)
    repeats: int = Field(default=200, ge=10)
    band_n: int = Field(default=1000, ge=20)
    band_repeats: int = Field(default=50, ge=1)
    seed: Seed = 0


def gaussian_audit_stage(params: GaussianAuditParams) -> dict[str, object]:
    """Epsilon lower bounds, conformal f-DP audit and trade-off band on Gaussian mechanisms.

    Returns:
        ``bounds`` (pa.Table: mechanism, n, strategy, eps_gdp, eps_cp, eps_true),
        ``metrics`` (type-I rates, power, band coverage, Opacus golden values),
        ``band`` (Figure: the band vs the true trade-off curve).
    """
    from matplotlib.figure import Figure


    p = params
    eps_true = dp.gdp_to_eps(p.mu, p.delta)
    rows = []
    for mech, scale in (("correct", 1.0), ("half_noise", 0.5)):
        for n in p.sample_sizes:
            out, inn = dp.gaussian_mechanism(n, p.mu, p.seed, noise_scale=scale)
            for st in p.strategies:
                rows.append({
                    "mechanism": mech, "n": n, "strategy": st,
                    "eps_gdp": dp.eps_gdp(inn, out, p.delta, p.significance, st, p.seed),
                    "eps_cp": dp.eps_clopper_pearson(inn, out, p.delta, p.significance, st, p.seed),
                    "eps_claimed": eps_true,
                    "eps_true": dp.gdp_to_eps(p.mu / scale, p.delta),
                })
    f = lambda a: dp.gaussian_tradeoff(a, p.mu)  # noqa: E731  (the claimed trade-off)
    metrics: dict[str, float] = {
        "eps_true": eps_true, "level": p.level, "repeats": p.repeats, "band_repeats": p.band_repeats,
    }
    for n in p.conformal_sizes:
        for mech, scale in (("correct", 1.0), ("half_noise", 0.5)):
            rej = [
                dp.conformal_fdp_audit(
                    *dp.gaussian_mechanism(n, p.mu, p.seed + 1 + r, noise_scale=scale), f, p.conformal_alpha, p.level
                ).reject
                for r in range(p.repeats)
            ]
            key = "type1" if mech == "correct" else "power"
            metrics[f"conformal_{key}_n{n}"] = float(np.mean(rej))
    alphas = np.linspace(0.05, 0.95, 19)
    truth = f(alphas)
    cover = []
    for r in range(p.band_repeats):
        band = dp.tradeoff_band(*dp.gaussian_mechanism(p.band_n, p.mu, p.seed + 10_000 + r), alphas, p.level)
        cover.append(bool(np.all((band["lower"] <= truth) & (truth <= band["upper"]))))
    metrics["band_coverage"] = float(np.mean(cover))
    broken = dp.tradeoff_band(*dp.gaussian_mechanism(p.band_n, p.mu, p.seed, noise_scale=0.5), alphas, p.level)
    metrics["band_broken_below_claim_frac"] = float(np.mean(broken["upper"] < truth))
    metrics.update({
        "opacus_rdp_eps": dp.accountant_epsilon(1.5, 0.04, 2250, 1e-5, "rdp"),
        "opacus_prv_eps": dp.accountant_epsilon(1.5, 0.04, 2250, 1e-5, "prv"),
        "opacus_noise_multiplier_eps8": dp.noise_multiplier_for(8.0, 1e-5, 0.04, 2250),
    })
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    grid = np.linspace(0, 1, 201)
    ax.plot(grid, f(grid), "k-", label=f"claimed: {p.mu:g}-GDP")
    ax.plot(grid, dp.gaussian_tradeoff(grid, 2 * p.mu), "r:", label=f"half noise: {2 * p.mu:g}-GDP")
    ax.fill_between(alphas, band["lower"], band["upper"], alpha=0.3, label=f"band, correct (n={p.band_n})")
    ax.fill_between(alphas, broken["lower"], broken["upper"], alpha=0.3, color="tab:red", label="band, half noise")
    ax.set(xlabel="type I error alpha", ylabel="type II error", title="Trade-off function T(P, Q)")
    ax.legend(fontsize=7)
    return {"bounds": pa.Table.from_pylist(rows), "metrics": metrics, "band": fig}


class DPSGDAuditParams(BaseModel):
    """Params of the DP-SGD canary audit.

    Attributes:
        target_eps: target epsilons, one DP-SGD model each.
        include_nonprivate: also train the same model without DP (the leakage baseline).
        canaries: number m of mislabelled canaries (each inserted w.p. 1/2).
        dpsgd: shared DP-SGD settings (its ``target_eps`` is replaced per run).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_eps: SetOf[float] = (1.0, 4.0, 16.0)
    include_nonprivate: bool = True
    canaries: int = Field(default=400, ge=10)
    dpsgd: DPSGDParams = DPSGDParams()


def _dp_runs(params):
    """``(target_eps, DPSGDParams)`` per run of a DP-SGD audit: the non-private run first
    (``None``, if ``params.include_nonprivate``), then each target epsilon."""
    runs = ([None] if params.include_nonprivate else []) + list(params.target_eps)
    for eps in runs:
        yield eps, params.dpsgd.model_copy(update={"target_eps": eps})


def dpsgd_audit_stage(params: DPSGDAuditParams, *, train: pa.Table, val: pa.Table, test: pa.Table) -> dict[str, object]:
    """One DP-SGD run per target epsilon (+ non-private), each audited by the one-run bound.

    Canaries come from ``val`` (never trained on otherwise); utility is test accuracy.

    Returns:
        ``results`` (pa.Table, one row per run) and ``metrics`` (wall time).
    """
    n_cls = num_classes(train, val, test)
    rows = []
    t_all = time.perf_counter()
    with torch_threads(1):
        for eps, p in _dp_runs(params):
            t0 = time.perf_counter()
            res = canary_audit(p, train, val, params.canaries, n_cls, test=test)
            rows.append({
                "target_eps": float("inf") if eps is None else float(eps),
                "eps_spent": res["eps_spent"],
                "eps_lb": res["eps_lb"],
                "canary_auc": res["canary_auc"],
                "noise_multiplier": res["noise_multiplier"],
                "test_acc": res["test_acc"],
                "r": res["r"], "v": res["v"], "m": res["m"],
                "secs": time.perf_counter() - t0,
            })
    return {"results": pa.Table.from_pylist(rows), "metrics": {"wall_s": time.perf_counter() - t_all}}


class ManyRunAuditParams(BaseModel):
    """Params of the many-run DP-SGD canary audit (Jagielski et al. 2020; Nasr et al. 2021).

    Attributes:
        target_eps: target epsilons, one pair of model arms each.
        include_nonprivate: also audit the same training without DP (the leakage baseline).
        n_models: R, models per arm (R on D, R on D + canary); the bound's resolution:
            with perfect separation R = 64 / 128 give at most ~2.0 / ~2.8 (Clopper-Pearson).
        train_rows: use only the first ``train_rows`` training rows as D (None = all),
            which makes each run cheaper; the canary audit does not depend on |D|.
        strategy: threshold strategy of the headline bounds (``split``: chosen on one half
            of the runs, certified on the other; ``bonferroni``); both are reported.
        significance: 1 - confidence of the lower bounds.
        canary_seed: seed of the canary draw (one mislabelled held-out example).
        dpsgd: DP-SGD settings of every run (``target_eps`` and ``seed`` are set per run).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_eps: SetOf[float] = (1.0, 4.0, 16.0)
    include_nonprivate: bool = True
    n_models: Annotated[int, Field(ge=4), Limit("models")] = 96
    train_rows: int | None = Field(default=None, ge=10)
    strategy: Literal["split", "bonferroni"] = "split"
    significance: float = Field(default=0.05, gt=0.0, lt=1.0)
    canary_seed: Seed = 0
    dpsgd: DPSGDParams = DPSGDParams(epochs=10, batch_size=128, model=ModelSpec(hidden=(64,)))

    @field_validator("target_eps")
    @classmethod
    def _positive(cls, v):
        bad = [e for e in v if not e > 0]
        if bad:
            raise ValueError(f"target epsilons must be > 0, got {bad}")
        return v


def dpsgd_many_run_stage(params: ManyRunAuditParams, *, train: pa.Table, val: pa.Table, test: pa.Table) -> dict[str, object]:
    """Many-run canary audit of DP-SGD at each target epsilon (+ non-private).

    One mislabelled canary is drawn from ``val`` (never trained on otherwise); D is
    ``train`` (or its first ``train_rows`` rows). Per target epsilon, R models train on D
    and R on D + canary (:func:`tasks.audit.dpsgd.many_run_scores`), and the canary's
    IN/OUT log-prob scores give Clopper-Pearson and GDP lower bounds
    (:func:`tasks.audit.dp.eps_many_run`) to compare with the accountant's epsilon.

    Returns:
        ``results`` (pa.Table, one row per target: target_eps (inf = no DP), eps_spent,
        noise_multiplier, n_models (per arm), eps_cp, eps_gdp (headline strategy),
        eps_cp_/eps_gdp_/mu_gdp_ per strategy, auc, in/out score means, test_acc, secs),
        ``scores`` (pa.Table: target_eps, arm ``in``/``out``, model, score) and
        ``metrics`` (wall time, total models, seconds per model).
    """

    n_cls = num_classes(train, val, test)
    canary = make_canaries(val, 1, n_cls, params.canary_seed)[0]
    d = train if params.train_rows is None else train.slice(0, params.train_rows)
    if params.train_rows is not None and d.num_rows < params.train_rows:
        raise ValueError(f"train_rows = {params.train_rows} but the train split has only {train.num_rows} rows")
    strategies = (params.strategy,) + tuple(s for s in dp.VALID_STRATEGIES if s != params.strategy)
    rows, score_rows = [], []
    t_all = time.perf_counter()
    with torch_threads(1):
        for eps, p in _dp_runs(params):
            t0 = time.perf_counter()
            res = many_run_scores(p, d, canary, params.n_models, n_cls, test=test)
            b = dp.eps_many_run(res["in_scores"], res["out_scores"], p.delta, params.significance, strategies,
                                params.canary_seed)
            target = float("inf") if eps is None else float(eps)
            rows.append({
                "target_eps": target, "eps_spent": res["eps_spent"], "noise_multiplier": res["noise_multiplier"],
                "n_models": params.n_models, "strategy": params.strategy, "significance": params.significance,
                "eps_cp": b[f"eps_cp_{params.strategy}"], "eps_gdp": b[f"eps_gdp_{params.strategy}"],
                **{f"{k}_{s}": b[f"{k}_{s}"] for s in dp.VALID_STRATEGIES for k in ("eps_cp", "eps_gdp", "mu_gdp")},
                "auc": b["auc"], "in_mean": float(res["in_scores"].mean()), "out_mean": float(res["out_scores"].mean()),
                "test_acc": res["test_acc"], "secs_per_model": res["secs_per_model"],
                "secs": time.perf_counter() - t0,
            })
            for arm in ("in", "out"):
                score_rows += [{"target_eps": target, "arm": arm, "model": i, "score": float(v)}
                               for i, v in enumerate(res[f"{arm}_scores"])]
    wall = time.perf_counter() - t_all
    n_total = 2 * params.n_models * len(rows)
    return {
        "results": pa.Table.from_pylist(rows), "scores": pa.Table.from_pylist(score_rows),
        "metrics": {"wall_s": wall, "models_trained": n_total, "secs_per_model": wall / n_total},
    }


def dp_comparison(dpsgd: pa.Table, many: pa.Table) -> pa.Table:
    """Per target epsilon (inf = no DP): accountant epsilon vs every empirical lower bound.

    Joins the one-run results (``dpsgd``) and the many-run results (``many``) on
    ``target_eps``; the two audits train different models (their own DP-SGD settings), so
    each bound is compared with its own models' accountant epsilon. ``verdict`` is
    ``consistent`` when no lower bound exceeds its accountant epsilon, ``no DP`` for the
    non-private baseline, and names the offending bound otherwise (a bug in the training,
    the accounting or the audit).
    """
    one = {r["target_eps"]: r for r in dpsgd.to_pylist()}
    rows = []
    for r in many.to_pylist():
        t = r["target_eps"]
        o = one.get(t)
        checks = {"many-run CP": (r["eps_cp"], r["eps_spent"]), "many-run GDP": (r["eps_gdp"], r["eps_spent"])}
        if o is not None:
            checks["one-run"] = (o["eps_lb"], o["eps_spent"])
        bad = [k for k, (lb, acc) in checks.items() if lb > acc + 1e-9]
        rows.append({
            "target_eps": t,
            "accountant_eps_one_run": o["eps_spent"] if o else float("nan"),
            "one_run_lb": o["eps_lb"] if o else float("nan"),
            "one_run_canaries": o["m"] if o else 0,
            "accountant_eps_many_run": r["eps_spent"],
            "many_run_cp_lb": r["eps_cp"],
            "many_run_gdp_lb": r["eps_gdp"],
            "models_per_arm": r["n_models"],
            "canary_auc": r["auc"],
            "verdict": "no DP" if not np.isfinite(t) else ("consistent" if not bad else "EXCEEDS accountant: " + ", ".join(bad)),
        })
    return pa.Table.from_pylist(rows)


class DPReportParams(BaseModel):
    """Params of the dp_audit report (none yet: its verdict rules come from the audits' own CIs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def report_dp(
    params: DPReportParams, *, bounds: pa.Table, gaussian: dict, dpsgd: pa.Table, many: pa.Table, band: bytes
) -> dict[str, object]:
    """Claims of the conformal f-DP auditing paper plus the accounting / lower-bound checks."""
    g = gaussian
    sizes = sorted(int(k.rsplit("_n", 1)[1]) for k in g if k.startswith("conformal_type1_n"))
    type1 = [g[f"conformal_type1_n{n}"] for n in sizes]
    power = [g[f"conformal_power_n{n}"] for n in sizes]
    level, reps, band_reps = g["level"], int(g["repeats"]), int(g["band_repeats"])
    b = bounds.to_pylist()
    correct = [r for r in b if r["mechanism"] == "correct" and r["strategy"] != "none"]
    valid = all(r["eps_gdp"] <= r["eps_true"] + 1e-9 and r["eps_cp"] <= r["eps_true"] + 1e-9 for r in correct)
    broken = [r for r in b if r["mechanism"] == "half_noise" and r["strategy"] == "bonferroni"]
    flagged = all(r["eps_gdp"] > r["eps_claimed"] for r in broken)
    big = max((r for r in correct if r["strategy"] == "bonferroni"), key=lambda r: r["n"])
    dps = dpsgd.to_pylist()
    private = [r for r in dps if np.isfinite(r["target_eps"])]
    nonpriv = [r for r in dps if not np.isfinite(r["target_eps"])]
    dp_valid = all(r["eps_lb"] <= r["eps_spent"] for r in private)
    claims = [
        Claim("CIPA controls the type I error in finite samples under minimal assumptions",
              "rejection rate of a correct 1-GDP claim over repeated audits: "
              + ", ".join(f"n={n}: {t:.3f}" for n, t in zip(sizes, type1)),
              "reproduced" if all(t <= level + 2 * np.sqrt(level * (1 - level) / reps) for t in type1) else "not reproduced",
              f"rule: every rate <= {level:g} + 2 binomial SE ({reps} audits each)"),
        Claim("Under monotone likelihood ratio the audit also controls type II error (detects violations)",
              "rejection rate of the half-noise mechanism claiming 1-GDP: "
              + ", ".join(f"n={n}: {p:.3f}" for n, p in zip(sizes, power)),
              "reproduced" if power == sorted(power) and power[-1] >= 0.9 else "not reproduced",
              "rule: power non-decreasing in the sample budget and >= 0.9 at the largest"),
        Claim("Finite-sample confidence bands for the trade-off function",
              f"simultaneous {1 - level:.0%} band (19 alphas) covered the true curve in {g['band_coverage']:.2f} of runs; for the "
              f"half-noise mechanism the upper band fell below the claimed curve at "
              f"{g['band_broken_below_claim_frac']:.2f} of the alphas",
              "reproduced" if g["band_coverage"] >= 1 - level - 2 * np.sqrt(level * (1 - level) / band_reps)
              else "not reproduced",
              f"rule: coverage >= {1 - level:.0%} minus 2 binomial SE ({band_reps} runs); the lower band assumes MLR (threshold tests optimal), "
              "as the paper proves a distribution-free lower band impossible"),
        Claim("Anchor: a 1-GDP Gaussian mechanism (eps 4.377 at delta 1e-5) audits from 1e4 samples to ~4.12 "
              "(GDP route) and ~2.01 (Clopper-Pearson), never above the truth",
              f"n={big['n']}: GDP {big['eps_gdp']:.2f}, CP {big['eps_cp']:.2f} (Bonferroni over thresholds); every "
              f"corrected bound <= true eps: {valid}; half-noise mechanism refuted (GDP bound > 4.377): {flagged}",
              "reproduced" if valid and flagged and big["eps_gdp"] > big["eps_cp"] else "not reproduced",
              "rule: corrected bounds <= true eps, GDP tighter than CP, the broken mechanism's bound exceeds "
              "the claim. Our GDP number is lower than 4.12 because we correct for the threshold choice"),
        Claim("Opacus accountant golden values: RDP 7.3291, PRV 6.7774 (sigma 1.5, q 0.04, 2250 steps); "
              "noise multiplier 1.416 for eps 8",
              f"RDP {g['opacus_rdp_eps']:.4f}, PRV {g['opacus_prv_eps']:.4f}, sigma {g['opacus_noise_multiplier_eps8']:.4f}",
              "reproduced" if abs(g["opacus_rdp_eps"] - 7.3291) < 1e-3 and abs(g["opacus_prv_eps"] - 6.7774) < 0.01
              and abs(g["opacus_noise_multiplier_eps8"] - 1.416) < 1e-3 else "not reproduced",
              "rule: RDP within 1e-3, PRV within 0.01 (its eps_error default), sigma within 1e-3"),
        Claim("DP-SGD collapses the empirical leakage of mislabelled canaries (Privacy Meter: 5.48 -> 0.42)",
              "; ".join(f"eps={r['target_eps']:g}: accountant {r['eps_spent']:.2f}, one-run LB {r['eps_lb']:.2f}, "
                        f"canary AUC {r['canary_auc']:.2f}, test acc {r['test_acc']:.3f}" for r in dps),
              "reproduced" if dp_valid and nonpriv and all(nonpriv[0]["eps_lb"] > r["eps_lb"] for r in private)
              else "not reproduced",
              "rule: every DP run's lower bound <= its accountant eps, and the non-private run's bound is "
              "above every DP run's"),
    ]
    cmp_ = dp_comparison(dpsgd, many)
    cmp_rows = cmp_.to_pylist()
    many_rows = many.to_pylist()
    m_priv = [r for r in many_rows if np.isfinite(r["target_eps"])]
    m_free = [r for r in many_rows if not np.isfinite(r["target_eps"])]
    consistent = all(r["verdict"] == "consistent" for r in cmp_rows if np.isfinite(r["target_eps"]))
    strategy = many_rows[0]["strategy"] if many_rows else "-"
    claims.append(Claim(
        "Many-run canary audit (Jagielski et al. 2020; Nasr et al. 2021): empirical epsilon lower bounds from "
        "models trained with and without one canary never exceed the accountant's epsilon",
        "; ".join(
            f"eps={r['target_eps']:g}: accountant {r['eps_spent']:.2f}, CP LB {r['eps_cp']:.2f}, GDP LB "
            f"{r['eps_gdp']:.2f} ({r['n_models']}+{r['n_models']} models, canary AUC {r['auc']:.2f})"
            for r in many_rows
        ) + "; verdicts: " + ", ".join(f"eps={r['target_eps']:g} {r['verdict']}" for r in cmp_rows),
        "reproduced" if m_priv and consistent and m_free and all(m_free[0]["eps_cp"] >= r["eps_cp"] for r in m_priv)
        else "not reproduced",
        f"rule: at every target eps, the one-run, many-run Clopper-Pearson and many-run GDP bounds "
        f"(threshold strategy '{strategy}', {1 - many_rows[0]['significance'] if many_rows else 0.95:.0%} confidence) are <= the "
        "accountant's eps (a bound above it flags a bug), and the non-private run's CP bound is >= every DP run's",
        value=max((r["eps_cp"] for r in m_free), default=None),
    ))
    rep = Report(
        title="Auditing Differential Privacy in the Black-Box Setting (conformal f-DP audit) + DP-SGD audits",
        paper="dp_audit", arxiv="2503.12045",
        summary=(
            "Known mechanisms: M(D) = N(0, s^2), M(D') = N(mu, s^2) with s = 1 (mu-GDP, as claimed) and s = 1/2 "
            "(the half-noise bug). Epsilon lower bounds by Clopper-Pearson and the GDP route with three threshold "
            "strategies; our conformal f-DP audit and trade-off band (construction in tasks/audit/dp.py). "
            "DP-SGD (Opacus) MLPs at several target epsilons, each audited in one run with mislabelled canaries "
            "(Steinke, Nasr, Jagielski 2023) and, separately, in many runs: R models trained without and R with "
            "one mislabelled canary per target epsilon, bounds by Clopper-Pearson and the GDP route "
            "(Jagielski et al. 2020; Nasr et al. 2021, 2023)."
        ),
        claims=claims,
        tables={
            "Epsilon lower bounds on Gaussian mechanisms": bounds,
            "DP-SGD runs and their one-run audits": dpsgd,
            "DP-SGD many-run canary audits": many.drop_columns(
                [c for c in many.column_names if c.startswith("mu_gdp_") or c in ("in_mean", "out_mean")]),
            "DP-SGD: accountant epsilon vs empirical lower bounds, per target epsilon (inf = no DP)": cmp_,
        },
        figures={"Trade-off function and bands": "band.png"},
        notes=(
            "The exact CIPA statistic of arXiv 2503.12045 was not available (no code; only the abstract read); "
            "our audit follows its description: a conformal (order-statistic) threshold controls type I, a "
            "binomial test on the type II error decides. Our verdicts judge that construction.",
            "The one-run bound picks the abstention cut-offs after seeing the scores (as Privacy Meter does), "
            "which is optimistic; with m canaries it cannot certify large epsilons anyway.",
            "The many-run audit scores the final model only (black box) with one mislabelled canary, so its "
            "bounds are far below the accountant's epsilon at every target: the accountant covers an adversary "
            "who sees every noisy gradient and inserts a worst-case gradient canary (Nasr et al. 2021). With R "
            "models per arm the Clopper-Pearson bound is capped even for perfectly separated scores (about 2.0 "
            "at R = 64 and 2.8 at R = 128, 95 % confidence); the GDP route converts a valid lower bound on mu "
            "into epsilon assuming a Gaussian trade-off curve (Nasr et al. 2023), so it is tighter but not "
            "distribution-free. The many-run audit uses D = the first train_rows training rows to keep "
            "each run cheap.",
        ),
    )
    return {**report_outputs(rep), "metrics": claims_metrics(claims, {}), "band": band}
