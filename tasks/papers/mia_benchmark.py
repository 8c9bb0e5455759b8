"""Report stages of the auditing papers: each seed paper's claims next to our measurements.

One function per paper pipeline (``mia_benchmark``, ``dp_audit``, ``text_detection``);
verdict rules are written next to each claim (in ``why``) and use the CIs.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from tasks.report import Claim, Report, report_outputs

METRIC_BASED = ("loss", "entropy", "modified_entropy")
MODEL_BASED = ("reference_loss", "lira_offline", "lira_online", "rmia")


class AuditReportParams(BaseModel):
    """Params of an auditing report.

    Attributes:
        unsatisfactory_tpr: "generally unsatisfactory" (TDDBench) means the best attack's
            TPR at 1 % FPR stays below this.
        min_rho: the cross-task Spearman correlation the MINT paper reports (rho > 0.6).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    unsatisfactory_tpr: float = Field(default=0.2, gt=0.0, le=1.0)
    min_rho: float = Field(default=0.6, ge=-1.0, le=1.0)


def _rows(table: pa.Table) -> dict[str, dict]:
    return {r["attack"]: r for r in table.to_pylist()}


def _ci(r: dict, key: str) -> str:
    return f"{r[key]:.3f} [{r[key + '_lo']:.3f}, {r[key + '_hi']:.3f}]"


def _metrics_json(claims: list[Claim], extra: dict) -> dict:
    return {"n_reproduced": sum(c.verdict == "reproduced" for c in claims), "n_claims": len(claims), **extra}


# ---------------------------------------------------------------------------------------
# mia_benchmark: TDDBench, LiRA, Pandora's White-Box (+ calibration audit)
# ---------------------------------------------------------------------------------------


def report_mia(params: AuditReportParams, **inputs) -> dict[str, object]:
    """Inputs per dataset ``<ds>``: ``attacks_<ds>`` (attack metrics table), ``timing_<ds>``
    (shadow training metrics), ``calibration_<ds>`` (calibration metrics), ``roc_<ds>`` and
    ``reliability_<ds>`` (PNG bytes, copied next to the report)."""
    datasets = sorted(k.removeprefix("attacks_") for k in inputs if k.startswith("attacks_"))
    tables, lines_order, lines_lira, lines_wb, lines_bad, lines_cost = {}, [], [], [], [], []
    ok_order = ok_lira = ok_wb = ok_bad = ok_cost = True
    cal_rows = []
    for ds in datasets:
        tab = inputs[f"attacks_{ds}"]
        rows = _rows(tab)
        tables[f"Attacks on {ds} (AUC 95% CI, TPR at FPR <= x)"] = tab.select(
            ["attack", "auc", "auc_lo", "auc_hi", "tpr_at_0.001_fpr", "tpr_at_0.01_fpr", "bal_acc", "secs"]
        )
        best_metric = max((rows[a] for a in METRIC_BASED if a in rows), key=lambda r: r["auc"], default=None)
        best_model = max((rows[a] for a in MODEL_BASED if a in rows), key=lambda r: r["auc"], default=None)
        if best_metric and best_model:
            good = best_model["auc_lo"] > best_metric["auc"]
            ok_order &= good
            lines_order.append(
                f"{ds}: best model-based {best_model['attack']} AUC {_ci(best_model, 'auc')} vs best metric-based "
                f"{best_metric['attack']} {_ci(best_metric, 'auc')}"
            )
        if "lira_online" in rows and "loss" in rows:
            lo, lz = rows["lira_online"], rows["loss"]
            ok_lira &= lo["tpr_at_0.01_fpr"] > lz["tpr_at_0.01_fpr"]
            lines_lira.append(
                f"{ds}: TPR@1%FPR LiRA-online {lo['tpr_at_0.01_fpr']:.3f} vs loss {lz['tpr_at_0.01_fpr']:.3f}; "
                f"TPR@0.1%FPR {lo['tpr_at_0.001_fpr']:.3f} vs {lz['tpr_at_0.001_fpr']:.3f}"
            )
        if "grad_norm" in rows and "loss" in rows:
            g, lz = rows["grad_norm"], rows["loss"]
            ok_wb &= g["auc_lo"] > lz["auc"]
            lines_wb.append(f"{ds}: grad-norm AUC {_ci(g, 'auc')} vs loss {_ci(lz, 'auc')}")
        best_tpr = max(r["tpr_at_0.01_fpr"] for r in rows.values())
        ok_bad &= best_tpr < params.unsatisfactory_tpr
        lines_bad.append(f"{ds}: best TPR@1%FPR {best_tpr:.3f}")
        timing = inputs[f"timing_{ds}"]
        metric_secs = max(rows[a]["secs"] for a in METRIC_BASED if a in rows)
        ok_cost &= timing["train_all_s"] > 10 * metric_secs
        lines_cost.append(
            f"{ds}: training {timing['n_models']} target+shadow models {timing['train_all_s']:.1f} s "
            f"(median {timing['train_per_model_s']:.2f} s each) vs slowest metric attack {metric_secs:.3f} s"
        )
        cal = inputs[f"calibration_{ds}"]
        for k in ("acc", "ece", "ece_mass", "classwise_ece", "brier", "nll"):
            cal_rows.append({"dataset": ds, "metric": k, "value": cal[k], "lo": cal[f"{k}_lo"], "hi": cal[f"{k}_hi"]})
    claims = [
        Claim("TDDBench: model-based (reference/shadow) detection beats metric-based detection "
              "(benchmark ordering model-based ~0.66-0.69 > metric ~0.54-0.60 AUROC)",
              "; ".join(lines_order), "reproduced" if ok_order else "not reproduced",
              "rule: on every dataset the best model-based attack's AUC CI lies above the best metric-based AUC"),
        Claim("TDDBench: 'generally unsatisfactory performance of TDD algorithms'",
              "; ".join(lines_bad), "reproduced" if ok_bad else "not reproduced",
              f"rule: best TPR at 1% FPR below {params.unsatisfactory_tpr:g} on every dataset"),
        Claim("TDDBench: model-based methods cost far more time than metric-based ones",
              "; ".join(lines_cost), "reproduced" if ok_cost else "not reproduced",
              "rule: shadow training time > 10x the slowest metric-based attack"),
        Claim("LiRA (Carlini et al. 2022): the online attack beats a global-threshold (loss) attack at low FPR",
              "; ".join(lines_lira), "reproduced" if ok_lira else "not reproduced",
              "rule: LiRA-online TPR at 1% FPR above the loss attack's on every dataset (0.1% FPR is shown but "
              "rests on < 1 non-member at our pool sizes)"),
        Claim("Pandora's White-Box: white-box gradient-norm attacks beat the black-box loss attack",
              "; ".join(lines_wb), "reproduced" if ok_wb else "not reproduced",
              "rule: grad-norm AUC CI lies above the loss AUC on every dataset; the paper's FLoRA/extraction "
              "claims need a fine-tuned LM and are not run here"),
    ]
    cal_tab = pa.Table.from_pylist(cal_rows)
    if "compression" in inputs:
        comp = inputs["compression"]
        keep = [c for c in comp.column_names if c == "model" or c in ("test_acc", "ece", "nll")
                or c.endswith(("_auc", "_auc_lo", "_auc_hi"))]
        tables["Digits target after N:M pruning and fixed-mask fine-tuning (reference-free attacks, "
               "members = its training half; test accuracy and ECE)"] = comp.select(keep)
    tables["Calibration of the target models (test split, 95% bootstrap CI)"] = cal_tab
    figures = {f"ROC, {ds} (log-log)": f"roc_{ds}.png" for ds in datasets}
    figures.update({f"Reliability diagram, {ds}": f"reliability_{ds}.png" for ds in datasets})
    rep = Report(
        title="TDDBench-style membership inference benchmark (with LiRA, RMIA, white-box and calibration audits)",
        paper="mia_benchmark", arxiv="",
        summary=(
            f"On {', '.join(datasets)}: a target MLP and shadow MLPs trained by the shared `fit` on balanced "
            "random halves of a candidate pool (each candidate IN for half the models; index files versioned "
            "as membership.parquet). Attacks: loss, entropy, modified entropy, gradient norm (white-box), "
            "reference-calibrated loss, LiRA offline/online (fixed variance), RMIA. AUC by the trapezoid rule "
            "with stratified bootstrap 95% CIs; TPR at FPR uses `fpr <= x`."
        ),
        claims=claims, tables=tables, figures=figures,
        notes=(
            "TDDBench evaluates 21 methods on 13 datasets with 256+256 reference models; we run 8 attacks on "
            "small tabular sets with the shadow counts in params.yaml, so low-FPR numbers rest on few points.",
            "Calibration (ECE equal-width/equal-mass, classwise ECE, Brier, NLL) is measured with "
            "tasks/methods/scoring.py; the calibration seed papers' methods (OKO set learning, PCE grouping) "
            "are training methods and are not run by this audit.",
        ),
    )
    plots = {f"{kind}_{ds}": inputs[f"{kind}_{ds}"] for ds in datasets for kind in ("roc", "reliability")}
    return {
        **report_outputs(rep),
        "metrics": _metrics_json(claims, {f"{ds}_{k}": v for ds in datasets for k, v in
                                         {"shadow_train_s": inputs[f"timing_{ds}"]["train_all_s"]}.items()}),
        **plots,
    }


# ---------------------------------------------------------------------------------------
# dp_audit: conformal black-box f-DP audit (arXiv 2503.12045), anchors, DP-SGD
# ---------------------------------------------------------------------------------------


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


def report_dp(
    params: AuditReportParams, *, bounds: pa.Table, gaussian: dict, dpsgd: pa.Table, many: pa.Table, band: bytes
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
            "strategies; our conformal f-DP audit and trade-off band (construction in tasks/methods/dp_audit.py). "
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
    return {**report_outputs(rep), "metrics": _metrics_json(claims, {}), "band": band}


# ---------------------------------------------------------------------------------------
# text_detection: MINT (detectors are MIAs) + Fast-DetectGPT
# ---------------------------------------------------------------------------------------


def report_text(params: AuditReportParams, *, transfer: pa.Table, summary: dict) -> dict[str, object]:
    """Claims of "Machine Text Detectors are MIAs" and Fast-DetectGPT on our char LMs."""
    rows = {r["statistic"]: r for r in transfer.to_pylist()}
    s = summary
    rho_ok = s["spearman_rho_lo"] > params.min_rho
    best_mia = max(rows.values(), key=lambda r: r["mia_auc"])
    b = rows["binoculars"]
    bino_top = b["mia_auc_hi"] >= best_mia["mia_auc"]
    fd = rows["fast_detectgpt"]
    baselines = [rows[k] for k in ("likelihood", "log_rank", "entropy")]
    fd_ok = all(fd["det_auc_lo"] > r["det_auc"] for r in baselines)
    claims = [
        Claim(f"MINT: detector and MIA rankings agree across methods (rho > {params.min_rho:g})",
              f"Spearman rho between MIA AUCs and detection AUCs of {len(rows)} statistics = "
              f"{s['spearman_rho']:.3f} [{s['spearman_rho_lo']:.3f}, {s['spearman_rho_hi']:.3f}]",
              "reproduced" if rho_ok else "not reproduced",
              f"rule: the CI's lower end exceeds {params.min_rho:g}"),
        Claim("MINT: Binoculars, built as a detector, is state of the art as an MIA too",
              f"Binoculars MIA AUC {b['mia_auc']:.3f} [{b['mia_auc_lo']:.3f}, {b['mia_auc_hi']:.3f}]; best MIA "
              f"statistic {best_mia['statistic']} {best_mia['mia_auc']:.3f}",
              "reproduced" if bino_top else "not reproduced",
              "rule: the best MIA AUC lies within Binoculars' CI (or Binoculars is best)"),
        Claim("Fast-DetectGPT (analytic, white-box) beats the likelihood, log-rank and entropy baselines",
              f"detection AUC {fd['det_auc']:.3f} [{fd['det_auc_lo']:.3f}, {fd['det_auc_hi']:.3f}] vs "
              + ", ".join(f"{r['statistic']} {r['det_auc']:.3f}" for r in baselines),
              "reproduced" if fd_ok else "not reproduced",
              "rule: Fast-DetectGPT's CI lies above every baseline's AUC"),
        Claim("Fast-DetectGPT beats DetectGPT by ~75% relative and is 340x faster",
              "not measured", "not testable at this scale",
              "DetectGPT needs a T5 mask-filling perturbation model; none ships offline"),
    ]
    rep = Report(
        title="Machine Text Detectors are Membership Inference Attacks (+ Fast-DetectGPT) on character LMs",
        paper="text_detection", arxiv="2510.19492",
        summary=(
            f"Two character-level GRU LMs trained on Python's pydoc topics and stdlib docstrings: the target on "
            f"{s['n_members']} member passages, the second (smaller; reference model and Binoculars performer) on "
            f"disjoint passages. MIA: members vs {s['n_nonmembers']} held-out passages. Detection: "
            f"{s['n_machine']} continuations sampled from the target vs {s['n_human']} held-out human passages. "
            f"Every statistic is scored on both tasks (higher = member = machine). Training "
            f"{s['train_target_s']:.0f} s + {s['train_other_s']:.0f} s, scoring {s['score_s']:.1f} s."
        ),
        claims=claims,
        tables={"Transfer table (AUC with 95% bootstrap CI on both tasks)": transfer},
        notes=(
            "The paper uses Pythia/LLaMA-scale LMs on MIMIR and RAID; ours are tiny char GRUs on offline Python "
            "documentation, and machine text is sampled at the configured temperature. Entropy's sign is "
            "reported as-is.",
            *(["Most MIA AUCs are near the ceiling here (min {:.3f}); ties at the top compress the MIA "
               "ranking and widen the CI of rho.".format(min(r["mia_auc"] for r in rows.values()))]
              if np.median([r["mia_auc"] for r in rows.values()]) > 0.95 else []),
        ),
    )
    return {**report_outputs(rep), "metrics": _metrics_json(claims, dict(s))}
