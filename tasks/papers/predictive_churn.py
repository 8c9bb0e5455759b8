"""Predictive Churn with the Set of Good Models (Watson-Daniels, Calmon, D'Amour, Long, Parkes,
Ustun; seed 003 #50; round2_candidates.md §3.2): the computation.

Per dataset and seed: a deployed model M0 (MLP on ``deploy_fraction`` of the training split);
its epsilon-Rashomon set from Bernoulli dropout (:mod:`tasks.multiplicity.sampler`), the
set defined on the reference split; real updates = MLPs retrained on the whole training
split with new seeds. Before any update we know, per test point, the share of set members
that disagree with M0 (its *disagreement score*; > 0 means the point is ambiguous). Then:

* anticipate: does the score predict which points an update flips (AUROC)? does the
  observed churn lie within the set's 5-95 % range of M0-vs-member churn?
* reduce: among an update's own epsilon-set members, pick the one that disagrees least
  with M0 on the unlabeled reference features; churn and accuracy vs the plain update;
* uncertainty-aware: abstain on the ``abstain_fraction`` most ambiguous test points;
  churn among the retained points vs all points;
* comparison arm (``mpt``): the update trained by margin preserving training (``negative_flips``'
  MPT, :mod:`tasks.distill.losses.flips`) from M0 (old source) and the plain update (new
  source), with the plain update's seed, so the two differ only in the loss. Negative-flip rate
  (NFR) of an update = share of test points M0 gets right and the update gets wrong.

Assumption (MPT): the update keeps M0's classes, so MPT's margin term (a logit bias on classes
M0 never saw) is void and MPT reduces to CE + focal distillation from M0 + focal distillation
from the plain update, at the authors' defaults (alpha 1, beta 5, tau 5).

Churn between two models = share of test points on which their decisions differ.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field

from models import ModelSpec
from tasks.data_prep import table_to_tensors
from tasks.distill.losses.flips import focal_kd
from tasks.multiplicity import metrics as mm
from tasks.multiplicity import sampler as sp
from tasks.multiplicity.common import ci_text, mean_ci, paired
from tasks.train import OptimParams, fit, init_model, num_classes

DATASETS = ("digits", "mnist1d", "breast_cancer")


class ChurnParams(BaseModel):
    """Params of the ``churn_<dataset>`` stages.

    Attributes:
        model, optim: the MLP and its training (M0 and every update).
        seeds: one deployed model per seed (>= 5 for CIs).
        deploy_fraction: share of the training split M0 sees (the update sees all of it).
        updates: retrained updates per seed.
        rates, max_rate, per_rate: the Bernoulli-dropout grid of each epsilon set.
        eps: the loss tolerance on the reference split.
        abstain_fraction: share of most-ambiguous test points an uncertainty-aware model skips.
        mpt: also train each update with MPT (the comparison arm; one more fit per update).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelSpec = ModelSpec(hidden=(64, 64))
    optim: OptimParams = OptimParams(max_epochs=30, batch_size=64, lr=1e-3)
    seeds: tuple[int, ...] = Field(default=(0, 1, 2, 3, 4), min_length=2)
    deploy_fraction: float = Field(default=0.7, gt=0.0, lt=1.0)
    updates: int = Field(default=10, ge=1)
    rates: int = Field(default=6, ge=2)
    max_rate: float = Field(default=0.3, gt=0.0, lt=1.0)
    per_rate: int = Field(default=40, ge=1)
    eps: float = Field(default=0.02, ge=0.0)
    abstain_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    mpt: bool = True


class ChurnReportParams(BaseModel):
    """Attributes: acc_tolerance_pts: accuracy the low-churn update may give up;
    coverage_gate: share of updates whose churn must fall in the set's 5-95 % range."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    acc_tolerance_pts: float = Field(default=0.5, ge=0.0)
    coverage_gate: float = Field(default=0.8, gt=0.0, le=1.0)


def _train(p: ChurnParams, train: pa.Table, val: pa.Table, n_classes: int, seed: int):
    model = init_model(p.model, train, n_classes, seed)
    fit(model, p.optim, train, val, seed)
    return model.eval()


def _mpt_update(p: ChurnParams, train: pa.Table, val: pa.Table, n_classes: int, seed: int, old, new):
    """The update trained with MPT from ``old`` (M0) and ``new`` (the plain update): CE + focal
    distillation from each (margin term void: same classes, see the module's Assumption)."""

    def loss_fn(out, y, x):
        with torch.no_grad():
            z_old, z_new = old(x), new(x)
        return (torch.nn.functional.cross_entropy(out, y) + focal_kd(out, z_old, y, 1.0, 5.0, 5.0)
                + focal_kd(out, z_new, y, 1.0, 5.0, 5.0))

    model = init_model(p.model, train, n_classes, seed)
    fit(model, p.optim, train, val, seed, loss_fn=loss_fn)
    return model.eval()


def _eps_set(model, p: ChurnParams, x_ref, y_ref, x_eval, seed: int) -> np.ndarray:
    """(k, n_eval, c) probabilities of the epsilon-valid dropout members of ``model``."""
    with torch.no_grad():
        base_loss = float(torch.nn.functional.cross_entropy(model(x_ref), y_ref))
    rates = np.linspace(0.0, p.max_rate, p.rates).tolist()
    c = sp.dropout_candidates(model, "dropout_bernoulli", rates, p.per_rate, x_ref, y_ref, x_eval, seed)
    return mm.members(c.test_probs, mm.epsilon_set(c.ref_loss, base_loss, p.eps), "dropout epsilon set")


# PAPER: one dataset ------------------------------------------------------------------------
def churn(params: dict, *, train: pa.Table, val: pa.Table, test: pa.Table) -> dict[str, object]:
    """Per seed: anticipation (AUROC, range coverage), reduction and abstention numbers.

    ``params`` = ``{"churn": ChurnParams, "data.<ds>": DataParams}``.
    """
    from sklearn.metrics import roc_auc_score
    from tasks.multiplicity.zoo import subsample

    p: ChurnParams = params["churn"]
    ds = next(v.dataset for k, v in params.items() if k.startswith("data."))
    x_ref, y_ref, _ = table_to_tensors(val)
    x_test, y_test, _ = table_to_tensors(test)
    y = y_test.numpy()
    n_ref = len(x_ref)
    x_eval = torch.cat([x_ref, x_test])  # members are scored on the unlabeled ref features and on test
    n_classes = num_classes(train, val)
    rows = []
    for s in p.seeds:
        m0 = _train(p, subsample(train, p.deploy_fraction, s), val, n_classes, s)
        with torch.no_grad():
            d0 = m0(x_test).argmax(-1).numpy()
        members = _eps_set(m0, p, x_ref, y_ref, x_test, seed=s)  # (k, n_test, c)
        dec = members.argmax(2)
        score = (dec != d0[None]).mean(0)  # per-point share of members disagreeing with M0
        member_churn = (dec != d0[None]).mean(1)
        lo_q, hi_q = np.quantile(member_churn, [0.05, 0.95])
        keep = score <= np.quantile(score, 1 - p.abstain_fraction, method="lower")
        aucs, covered, churn_plain, churn_sel, acc_plain, acc_sel, churn_kept = [], [], [], [], [], [], []
        nfr_plain, nfr_sel, churn_mpt, acc_mpt, nfr_mpt = [], [], [], [], []
        m0_right = d0 == y
        for j in range(p.updates):
            seed_u = 1000 * (s + 1) + j
            upd = _train(p, train, val, n_classes, seed_u)
            with torch.no_grad():
                du = upd(x_test).argmax(-1).numpy()
            flipped = du != d0
            if 0 < flipped.sum() < len(flipped):
                aucs.append(float(roc_auc_score(flipped, score)))
            churn_plain.append(float(flipped.mean()))
            covered.append(float(lo_q <= flipped.mean() <= hi_q))
            acc_plain.append(float((du == y).mean()))
            churn_kept.append(float(flipped[keep].mean()))
            # reduce: the update's own epsilon-set member closest to M0 on the unlabeled reference features
            own = _eps_set(upd, p, x_ref, y_ref, x_eval, seed=seed_u)
            with torch.no_grad():
                d0_ref = m0(x_ref).argmax(-1).numpy()
            pick = int(np.argmin((own[:, :n_ref].argmax(2) != d0_ref[None]).mean(1)))
            ds_ = own[pick, n_ref:].argmax(1)
            churn_sel.append(float((ds_ != d0).mean()))
            acc_sel.append(float((ds_ == y).mean()))
            nfr_plain.append(float((m0_right & (du != y)).mean()))
            nfr_sel.append(float((m0_right & (ds_ != y)).mean()))
            if p.mpt:
                mpt_model = _mpt_update(p, train, val, n_classes, seed_u, m0, upd)
                with torch.no_grad():
                    dm = mpt_model(x_test).argmax(-1).numpy()
                churn_mpt.append(float((dm != d0).mean()))
                acc_mpt.append(float((dm == y).mean()))
                nfr_mpt.append(float((m0_right & (dm != y)).mean()))
        rows.append({
            "dataset": ds, "seed": s, "set_size": int(len(members)),
            "ambiguity": float((score > 0).mean()),
            "set_churn_q05": float(lo_q), "set_churn_q95": float(hi_q),
            "auroc": float(np.mean(aucs)) if aucs else float("nan"),
            "coverage": float(np.mean(covered)),
            "churn_plain": float(np.mean(churn_plain)), "churn_selected": float(np.mean(churn_sel)),
            "acc_m0": float((d0 == y).mean()),
            "acc_plain": float(np.mean(acc_plain)), "acc_selected": float(np.mean(acc_sel)),
            "churn_all": float(np.mean(churn_plain)), "churn_retained": float(np.mean(churn_kept)),
            "nfr_plain": float(np.mean(nfr_plain)), "nfr_selected": float(np.mean(nfr_sel)),
            # NaN when the MPT arm is off (params.churn.mpt: false)
            "churn_mpt": float(np.mean(churn_mpt)) if churn_mpt else float("nan"),
            "acc_mpt": float(np.mean(acc_mpt)) if acc_mpt else float("nan"),
            "nfr_mpt": float(np.mean(nfr_mpt)) if nfr_mpt else float("nan"),
        })
    table = pa.Table.from_pylist(rows)
    return {"churn": table, "metrics": {"mean_churn": float(np.mean([r["churn_plain"] for r in rows]))}}


# PAPER: report -----------------------------------------------------------------------------
def update_rules(rows: list[dict], col) -> tuple[pa.Table, str]:
    """Per dataset: churn, accuracy and NFR of the plain update, the low-churn member of its
    epsilon set and the MPT update; and a note with the paired CIs of selected vs MPT.

    ``col(name)`` maps (dataset, seed) to a finite column value (the report's helper).
    """
    out = []
    for d in DATASETS:
        sel = [x for x in rows if x["dataset"] == d]
        for r in ("plain", "selected", "mpt"):  # mpt columns are NaN when the arm is off
            out.append({"dataset": d, "rule": r, **{k: float(np.mean([x[f"{k}_{r}"] for x in sel]))
                                                     for k in ("churn", "acc", "nfr")}})
    table = pa.Table.from_pylist(out)
    if not col("churn_mpt"):
        return table, "The MPT comparison arm was off in this run (churn.mpt: false)."
    c, n = paired(col("churn_selected"), col("churn_mpt")), paired(col("nfr_selected"), col("nfr_mpt"))
    m = paired(col("nfr_mpt"), col("nfr_plain"))
    return table, (
        "Comparison arm, negative_flips' MPT (CE + focal distillation from M0 and from the plain update; the margin "
        f"term is void with unchanged classes): NFR MPT - plain update {ci_text(m, 100, 'pts')}; churn selected "
        f"member - MPT {ci_text(c, 100, 'pts')}; NFR selected - MPT {ci_text(n, 100, 'pts')}."
    )


def report(params: ChurnReportParams, **tables: pa.Table) -> dict[str, object]:
    from tasks.platform.report import Claim, Report, report_outputs

    rows = [r for d in DATASETS for r in tables[f"churn_{d}"].to_pylist()]
    key = lambda r: (r["dataset"], r["seed"])  # noqa: E731
    col = lambda c: {key(r): r[c] for r in rows if np.isfinite(r[c])}  # noqa: E731
    claims = []
    m, lo, hi = mean_ci(list(col("auroc").values()))
    claims.append(Claim(
        "multiplicity measures over the Rashomon set anticipate churn: ambiguous points are the ones updates flip",
        f"AUROC of the pre-update disagreement score for points an update flips: {m:.3f} [{lo:.3f}, {hi:.3f}] "
        f"over {len(col('auroc'))} (dataset, seed)",
        "reproduced" if lo > 0.5 else "not reproduced", "CI lower bound above 0.5 (our gate; the abstract gives none)",
        value=m, lo=lo, hi=hi,
    ))
    cov = float(np.mean(list(col("coverage").values())))
    claims.append(Claim(
        "expected churn over the Rashomon set characterises the churn of real model updates",
        f"share of updates whose churn lies in the set's 5-95% M0-vs-member churn range: {cov:.2f}",
        "reproduced" if cov >= params.coverage_gate else "not reproduced",
        f"at least {params.coverage_gate:.0%} of updates inside the range",
        value=cov,
    ))
    c = paired(col("churn_selected"), col("churn_plain"))
    a = paired(col("acc_selected"), col("acc_plain"))
    tol = params.acc_tolerance_pts / 100
    claims.append(Claim(
        "choosing the update within its Rashomon set reduces churn",
        f"churn selected - plain update: {ci_text(c, 100, 'pts')}; accuracy: {ci_text(a, 100, 'pts')}",
        "reproduced" if (c["hi"] < 0 and a["lo"] > -tol) else "not reproduced",
        f"churn CI below 0 with accuracy CI above -{params.acc_tolerance_pts:g} pts",
        value=c["diff"] * 100, lo=c["lo"] * 100, hi=c["hi"] * 100, unit="pts",
    ))
    r_ = paired(col("churn_retained"), col("churn_all"))
    claims.append(Claim(
        "the approach is useful even for models enhanced with uncertainty awareness",
        f"abstaining on the most ambiguous points, churn retained - all: {ci_text(r_, 100, 'pts')}",
        "reproduced" if r_["hi"] < 0 else "not reproduced",
        "churn among retained points below churn on all points (paired CI below 0)",
        value=r_["diff"] * 100, lo=r_["lo"] * 100, hi=r_["hi"] * 100, unit="pts",
    ))
    summary_rows = []
    for d in DATASETS:
        sel = [r for r in rows if r["dataset"] == d]
        summary_rows.append({"dataset": d, "seeds": len(sel), **{
            k: float(np.nanmean([r[k] for r in sel])) for k in
            ("set_size", "ambiguity", "auroc", "coverage", "churn_plain", "churn_selected", "churn_retained",
             "acc_m0", "acc_plain", "acc_selected")}})
    summary = pa.Table.from_pylist(summary_rows)
    arms, mpt_note = update_rules(rows, col)
    rep = Report(
        title="Predictive Churn with the Set of Good Models", paper="predictive_churn", arxiv="",
        summary=(
            "Per dataset (digits, mnist1d, breast cancer) and seed: a deployed MLP M0 on part of the training split, "
            "its Bernoulli-dropout epsilon-Rashomon set (defined on the reference split), and real updates retrained "
            "on the whole training split with new seeds. Churn = share of test points whose decision changes."
        ),
        claims=claims, tables={"Churn per dataset (mean over seeds)": summary,
                               "Update rules vs the deployed model M0 (mean over seeds; nfr = share of test points "
                               "M0 gets right and the update gets wrong)": arms},
        notes=[
            "The paper's theory and its real-world datasets are not reproduced; the abstract gives no numbers, so "
            "the gates (AUROC > 0.5, 80% coverage) are ours.",
            mpt_note,
        ],
    )
    metrics = {"auroc": m, "coverage": cov, "verdicts": {cl.claim[:60]: cl.verdict for cl in claims}}
    return {**report_outputs(rep), "summary": summary, "metrics": metrics}
