"""Dropout-Based Rashomon Set Exploration for Efficient Predictive Multiplicity Estimation
(Hsu, Li, Wang, Chen, Calmon; ICLR 2024; seed 003 #53; notes in
../shared/research/round2_candidates.md §3.1).

Per dataset and base seed: train a base MLP; propose candidates with four samplers
(:mod:`tasks.multiplicity.sampler`: retraining, Bernoulli and Gaussian dropout at inference,
AWP); keep those within epsilon of the base's loss on the *reference* split; measure the six
multiplicity metrics (:mod:`tasks.multiplicity.metrics`) on the test features and the wall
time per epsilon-valid model. The report turns that into verdicts on the paper's claims.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import stats

from models import ModelSpec
from tasks.data_prep import table_to_tensors
from tasks.multiplicity import metrics as mm
from tasks.multiplicity import sampler as sp
from tasks.multiplicity.common import ci_text, mean_ci, paired, rows_table
from tasks.train import OptimParams, fit, init_model, num_classes

DATASETS = ("digits", "mnist1d", "breast_cancer")


class ExploreParams(BaseModel):
    """Params of the ``explore_<dataset>`` stages.

    Attributes:
        model: the base MLP (the paper's small-data setup: 2 x 64).
        optim: training of the base model and of every retrained candidate.
        base_seeds: one base model per seed (>= 5 for seed CIs).
        retrain_models: retrained candidates per base seed (the baseline).
        rates: number of dropout rates, evenly spaced in [0, max_rate] (reference: 11).
        max_rate: largest dropout rate (reference: 0.3).
        per_rate: dropout candidates per rate (reference: 100).
        awp_points: test inputs perturbed towards every class by AWP.
        awp_steps, awp_lr: SGD steps and step size of each AWP trajectory.
        eps_grid: loss tolerances of the epsilon sets (reference: 0 .. 0.04).
        eps_main: the epsilon the verdicts use (must be in ``eps_grid``).
        capacity_members: Rashomon capacity is computed at ``eps_main`` on at most this many
            members (a random subset; capacity of a subset is a lower bound).
        ensemble_k, ensemble_rate: claim 3's dropout ensemble (mean of k Bernoulli samples).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelSpec = ModelSpec(hidden=(64, 64))
    optim: OptimParams = OptimParams(max_epochs=30, batch_size=64, lr=1e-3)
    base_seeds: tuple[int, ...] = Field(default=(0, 1, 2, 3, 4), min_length=2)
    retrain_models: int = Field(default=20, ge=1)
    rates: int = Field(default=11, ge=2)
    max_rate: float = Field(default=0.3, gt=0.0, lt=1.0)
    per_rate: int = Field(default=100, ge=1)
    awp_points: int = Field(default=10, ge=1)
    awp_steps: int = Field(default=10, ge=1)
    awp_lr: float = Field(default=0.05, gt=0.0)
    eps_grid: tuple[float, ...] = (0.0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04)
    eps_main: float = 0.02
    capacity_members: int = Field(default=64, ge=2)
    ensemble_k: int = Field(default=20, ge=2)
    ensemble_rate: float = Field(default=0.1, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _eps(self):
        for e in self.eps_grid:
            if not (math.isfinite(e) and e >= 0):
                raise ValueError(f"eps_grid has {e}: epsilon must be a finite number >= 0")
        if self.eps_main not in self.eps_grid:
            raise ValueError(f"eps_main = {self.eps_main} is not in eps_grid {list(self.eps_grid)}")
        return self


class ReportParams(BaseModel):
    """Params of the report.

    Attributes:
        speed_gate: claimed lowest speed-up per epsilon-valid model (abstract: 20x).
        acc_tolerance_pts: claim 3: the dropout ensemble's accuracy may be this much lower.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    speed_gate: float = Field(default=20.0, gt=0.0)
    acc_tolerance_pts: float = Field(default=0.5, ge=0.0)


# PAPER: one dataset's exploration ----------------------------------------------------------
def _method_rows(ds: str, seed: int, c: sp.Candidates, base_probs: np.ndarray, base_loss: float,
                 p: ExploreParams, rng: np.random.Generator) -> list[dict]:
    """Metrics of ``c``'s epsilon sets (base model always a member) at every epsilon."""
    base_pred = base_probs.argmax(-1)
    total = float(c.seconds.sum())
    rows = []
    for eps in p.eps_grid:
        mask = mm.epsilon_set(c.ref_loss, base_loss, eps)
        n_valid = int(mask.sum())
        scores = np.concatenate([base_probs[None], c.test_probs[mask]])
        out = mm.multiplicity(scores, base_pred, capacity=False)
        if eps == p.eps_main:
            keep = scores if len(scores) <= p.capacity_members else scores[
                np.sort(rng.choice(len(scores), p.capacity_members, replace=False))]
            out["rashomon_capacity"] = float(mm.rashomon_capacity(keep).mean())
        rows.append({
            "dataset": ds, "seed": seed, "method": c.method, "eps": float(eps),
            "n_candidates": len(c), "n_valid": n_valid, "frac_valid": n_valid / len(c),
            "seconds_total": total,
            "sec_per_candidate": total / len(c),
            # NOTE: no epsilon-valid candidate -> no cost per valid model (NaN, reported as such)
            "sec_per_valid": total / n_valid if n_valid else float("nan"),
            **{k: float(v) for k, v in out.items() if k != "n_models"},
        })
    return rows


def _rate_rows(ds: str, seed: int, c: sp.Candidates, base_loss: float, eps: float) -> list[dict]:
    rows = []
    for rate in np.unique(c.knob):
        sel = c.knob == rate
        rows.append({
            "dataset": ds, "seed": seed, "method": c.method, "rate": float(rate),
            "frac_valid": float(mm.epsilon_set(c.ref_loss[sel], base_loss, eps).mean()),
            "loss_increase": float((c.ref_loss[sel] - base_loss).mean()),
        })
    return rows


def _disagreement_with_others(preds: dict[int, np.ndarray]) -> dict[int, float]:
    """Per seed: mean share of test points on which its decisions differ from each other seed's."""
    return {s: float(np.mean([(preds[s] != preds[t]).mean() for t in preds if t != s])) for s in preds}


def explore(params: dict, *, train: pa.Table, val: pa.Table, test: pa.Table) -> dict[str, object]:
    """Run every sampler around a base model per seed on one dataset.

    ``params`` = ``{"explore": ExploreParams, "data.<ds>": DataParams}``. ``val`` is the
    reference split (epsilon sets); ``test`` features are scored, and ``test`` labels are
    used only for the accuracy of the claim-3 ensembles.
    """
    ex = params["explore"]
    ds = next(v.dataset for k, v in params.items() if k.startswith("data."))
    params = ex
    x_ref, y_ref, _ = table_to_tensors(val)
    x_test, y_test, _ = table_to_tensors(test)
    n_classes = num_classes(train, val)
    rates = np.linspace(0.0, params.max_rate, params.rates).tolist()
    multi, rate_rows, ens_rows, base_rows = [], [], [], []
    single_preds, ens_preds = {}, {}
    for b in params.base_seeds:
        t0 = time.perf_counter()
        model = init_model(params.model, train, n_classes, b)
        fit(model, params.optim, train, val, b)
        base_seconds = time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            base_loss = float(torch.nn.functional.cross_entropy(model(x_ref), y_ref))
            base_probs = model(x_test).softmax(-1).float().numpy()
        rng = np.random.default_rng(b)
        retrain_seeds = [1000 * (b + 1) + j for j in range(params.retrain_models)]
        retrained, _ = sp.retrain_candidates(params.model, params.optim, train, val, x_test, retrain_seeds)
        cands = [retrained]
        for kind in ("dropout_bernoulli", "dropout_gaussian"):
            cands.append(sp.dropout_candidates(model, kind, rates, params.per_rate, x_ref, y_ref, x_test, seed=b))
        cands.append(sp.awp_candidates(model, x_ref, y_ref, x_test, params.awp_points, params.awp_steps,
                                       params.awp_lr, base_loss + max(params.eps_grid), seed=b))
        for c in cands:
            multi += _method_rows(ds, b, c, base_probs, base_loss, params, rng)
            if c.method.startswith("dropout"):
                rate_rows += _rate_rows(ds, b, c, base_loss, params.eps_main)
        # claim 3: a dropout ensemble of this base model
        ens = sp.dropout_candidates(model, "dropout_bernoulli", [params.ensemble_rate], params.ensemble_k,
                                    x_ref, y_ref, x_test, seed=10_000 + b)
        single_preds[b] = base_probs.argmax(-1)
        ens_preds[b] = ens.test_probs.mean(0).argmax(-1)
        base_rows.append({"dataset": ds, "seed": b, "base_ref_loss": base_loss, "train_seconds": base_seconds,
                          "test_acc": float((single_preds[b] == y_test.numpy()).mean()),
                          "ensemble_acc": float((ens_preds[b] == y_test.numpy()).mean())})
    single_dis = _disagreement_with_others(single_preds)
    ens_dis = _disagreement_with_others(ens_preds)
    for r in base_rows:
        ens_rows.append({**r, "single_disagreement": single_dis[r["seed"]], "ensemble_disagreement": ens_dis[r["seed"]]})
    metrics = {
        "base_test_acc": float(np.mean([r["test_acc"] for r in base_rows])),
        "base_train_seconds": float(np.mean([r["train_seconds"] for r in base_rows])),
    }
    return {"multiplicity": rows_table(multi), "rates": rows_table(rate_rows),
            "ensemble": rows_table(ens_rows), "metrics": metrics}


# PAPER: the report -------------------------------------------------------------------------
def _finite_ci(value: float, lo: float, hi: float) -> dict[str, float | None]:
    """Claim fields; a NaN (no seed had an epsilon-valid retrain) shows as no value."""
    if not all(math.isfinite(v) for v in (value, lo, hi)):
        return {"value": None, "lo": None, "hi": None}
    return {"value": value, "lo": lo, "hi": hi}


def _col(t: pa.Table, where: dict, col: str) -> dict[tuple, float]:
    rows = [r for r in t.to_pylist() if all(r[k] == v for k, v in where.items())]
    return {(r["dataset"], r["seed"]): float(r[col]) for r in rows}


def report(params: dict, **tables: object) -> dict[str, object]:
    """Claims of the paper with our measurements and verdicts (all datasets pooled and per dataset).

    ``params`` = ``{"explore": ExploreParams, "report": ReportParams}``; ``tables`` are
    ``multiplicity_<ds>``, ``rates_<ds>``, ``ensemble_<ds>``.
    """
    from tasks.platform.report import Claim, Report, report_outputs

    ex: ExploreParams = params["explore"]
    rp: ReportParams = params["report"]
    multi = pa.concat_tables([tables[f"multiplicity_{d}"] for d in DATASETS])
    rates = pa.concat_tables([tables[f"rates_{d}"] for d in DATASETS])
    ens = pa.concat_tables([tables[f"ensemble_{d}"] for d in DATASETS])
    eps = ex.eps_main
    claims = []

    # (2b) speed per epsilon-valid model, retraining / dropout, per dataset
    speed_rows, all_ok = [], True
    for ds in DATASETS:
        rt = _col(multi, {"dataset": ds, "method": "retrain", "eps": eps}, "sec_per_valid")
        for kind in ("dropout_bernoulli", "dropout_gaussian", "awp"):
            other = _col(multi, {"dataset": ds, "method": kind, "eps": eps}, "sec_per_valid")
            logr = [math.log10(rt[k] / other[k]) for k in rt if math.isfinite(rt[k]) and math.isfinite(other.get(k, math.nan))]
            row = {"dataset": ds, "sampler": kind, "seeds_with_ratio": len(logr), "seeds": len(rt)}
            if len(logr) >= 2:
                m, lo, hi = mean_ci(logr)
                row.update(ratio_geomean=10**m, ci_lo=10**lo, ci_hi=10**hi)
            else:
                row.update(ratio_geomean=math.nan, ci_lo=math.nan, ci_hi=math.nan)
            speed_rows.append(row)
            if kind == "dropout_bernoulli":
                all_ok &= bool(row["ci_lo"] >= rp.speed_gate)
    bern = [r for r in speed_rows if r["sampler"] == "dropout_bernoulli"]
    worst = min(bern, key=lambda r: r["ci_lo"] if math.isfinite(r["ci_lo"]) else -1)
    claims.append(Claim(
        f"dropout exploration is 20x to 5000x faster than retraining per epsilon-valid model (eps = {eps})",
        "retrain / Bernoulli-dropout seconds per epsilon-valid model, geometric mean over seeds: " + "; ".join(
            f"{r['dataset']} {r['ratio_geomean']:.0f}x [{r['ci_lo']:.0f}, {r['ci_hi']:.0f}]" for r in bern),
        "reproduced" if all_ok else "not reproduced",
        f"95% CI lower bound >= {rp.speed_gate:g}x on every dataset (the abstract's low end)",
        **_finite_ci(worst["ratio_geomean"], worst["ci_lo"], worst["ci_hi"]), unit="x (slowest dataset)",
    ))

    # (2a) at matched epsilon, dropout finds at least as much multiplicity as retraining
    for metric in ("ambiguity", "discrepancy", "vpr"):
        d = _col(multi, {"method": "dropout_bernoulli", "eps": eps}, metric)
        r = _col(multi, {"method": "retrain", "eps": eps}, metric)
        c = paired(d, r)
        claims.append(Claim(
            f"dropout estimates predictive multiplicity ({metric}) more effectively than retraining",
            f"{metric} dropout - retrain at eps = {eps}, (dataset, seed) pairs: {ci_text(c)}",
            "reproduced" if c["lo"] > 0 else "not reproduced",
            "paired CI above 0 (these metrics are lower bounds on the set's multiplicity, so more = better "
            "exploration; dropout uses far less time than retraining, so equal budget favours it further)",
            value=c["diff"], lo=c["lo"], hi=c["hi"],
        ))

    # (1) dropout rate <-> Rashomon-set properties (monotone)
    rho_loss, rho_valid = {}, {}
    for r in {(x["dataset"], x["seed"], x["method"]) for x in rates.to_pylist()}:
        sel = [x for x in rates.to_pylist() if (x["dataset"], x["seed"], x["method"]) == r]
        rate = [x["rate"] for x in sel]
        rho_loss[r] = float(stats.spearmanr(rate, [x["loss_increase"] for x in sel]).statistic)
        fv = [x["frac_valid"] for x in sel]
        rho_valid[r] = float(stats.spearmanr(rate, fv).statistic) if np.ptp(fv) > 0 else -1.0
    ml, ll, hl = mean_ci(list(rho_loss.values()))
    mv, lv, hv = mean_ci(list(rho_valid.values()))
    claims.append(Claim(
        "dropout parameters connect to properties of the Rashomon set (loss increase and the share of "
        "samples inside the set vary monotonically with the dropout rate)",
        f"Spearman(rate, loss increase) = {ml:.3f} [{ll:.3f}, {hl:.3f}]; "
        f"Spearman(rate, share in eps-set) = {mv:.3f} [{lv:.3f}, {hv:.3f}] over (dataset, seed, kind)",
        "reproduced" if (ll > 0 and hv < 0) else "not reproduced",
        "CI of the loss correlation above 0 and of the in-set share below 0 (the bound itself needs the paper)",
        value=ml, lo=ll, hi=hl,
    ))
    claims.append(Claim(
        "rigorous theoretical derivations connect the dropout parameters to the Rashomon set",
        "not measured", "not testable at this scale", "a theorem: needs the paper's statement, not an experiment",
    ))

    # (3) mitigation: dropout ensembles disagree less across base seeds, at similar accuracy
    e = {(r["dataset"], r["seed"]): r for r in ens.to_pylist()}
    dis = paired({k: v["ensemble_disagreement"] for k, v in e.items()}, {k: v["single_disagreement"] for k, v in e.items()})
    acc = paired({k: v["ensemble_acc"] for k, v in e.items()}, {k: v["test_acc"] for k, v in e.items()})
    tol = rp.acc_tolerance_pts / 100
    claims.append(Claim(
        "a dropout ensemble mitigates predictive multiplicity",
        f"disagreement across base seeds, ensemble - single: {ci_text(dis, 100, 'pts')}; "
        f"accuracy ensemble - single: {ci_text(acc, 100, 'pts')}",
        "reproduced" if (dis["hi"] < 0 and acc["lo"] > -tol) else "not reproduced",
        f"disagreement CI below 0 and accuracy CI above -{rp.acc_tolerance_pts:g} pts",
        value=dis["diff"] * 100, lo=dis["lo"] * 100, hi=dis["hi"] * 100, unit="pts",
    ))

    summary_rows = []
    for ds in DATASETS:
        for method in sp.SAMPLERS:
            sel = [r for r in multi.to_pylist() if r["dataset"] == ds and r["method"] == method and r["eps"] == eps]
            row = {"dataset": ds, "method": method, "seeds": len(sel)}
            for k in ("n_valid", "frac_valid", "sec_per_candidate", "ambiguity", "discrepancy", "disagreement",
                      "vpr", "score_variance", "rashomon_capacity"):
                vals = [r[k] for r in sel if math.isfinite(r[k])]
                row[k] = float(np.mean(vals)) if vals else math.nan
            summary_rows.append(row)
    summary = pa.Table.from_pylist(summary_rows)
    curve = pa.Table.from_pylist([
        {"dataset": ds, "method": m, "eps": e_,
         "ambiguity": float(np.mean(list(_col(multi, {"dataset": ds, "method": m, "eps": e_}, "ambiguity").values())))}
        for ds in DATASETS for m in sp.SAMPLERS for e_ in ex.eps_grid])
    rep = Report(
        title="Dropout-Based Rashomon Set Exploration for Efficient Predictive Multiplicity Estimation",
        paper="dropout_rashomon", arxiv="",
        summary=(
            f"Per dataset (digits, mnist1d, breast cancer) and each of {len(ex.base_seeds)} base seeds: a base MLP "
            f"{list(ex.model.hidden)}; candidates from retraining ({ex.retrain_models} seeds), Bernoulli and Gaussian "
            f"dropout at inference ({ex.rates} rates in [0, {ex.max_rate}] x {ex.per_rate}), and AWP "
            f"({ex.awp_points} test inputs x every class x <= {ex.awp_steps} steps). The epsilon-Rashomon set is "
            "defined on the held-out reference (validation) split, never on test labels; metrics are on the test "
            "features. Speed = a sampler's total wall time / its number of epsilon-valid candidates."
        ),
        claims=claims,
        tables={
            f"Speed-up per epsilon-valid model vs retraining (eps = {eps}; geometric mean, 95% CI over seeds)":
                pa.Table.from_pylist(speed_rows),
            f"Multiplicity per sampler at eps = {eps} (mean over seeds)": summary,
            "Ambiguity against epsilon (mean over seeds)": curve,
        },
        notes=[
            "The paper uses UCI tables and CIFAR-10/100 with VGG/ResNets and defines the Rashomon set on the "
            "test loss; we use three small datasets, a 2-layer MLP and a held-out reference split.",
            "Assumption: one dropout mask per candidate shared by all inputs (the reference redraws per input "
            "row); VPR and score variance score the base model's predicted class, not the true label; AWP keeps "
            "every iterate of one ascent per (input, class) instead of a search per epsilon.",
            f"Rashomon capacity is computed at eps = {eps} on at most {ex.capacity_members} members (a lower bound).",
            "Timings are wall-clock on a shared 2-core CPU machine; ratios matter, absolute seconds do not.",
        ],
    )
    metrics = {
        "speedup_bernoulli": {r["dataset"]: r["ratio_geomean"] for r in bern if math.isfinite(r["ratio_geomean"])},
        "verdicts": {c.claim[:60]: c.verdict for c in claims},
    }
    return {**report_outputs(rep), "summary": summary, "metrics": metrics}
