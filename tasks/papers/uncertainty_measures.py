"""On Information-Theoretic Measures of Predictive Uncertainty (Schweighofer et al.; seed 003 #56;
round2_candidates.md §3.4): the computation.

Per dataset and ensemble seed: a deep ensemble of MLPs trained on the first ``id_classes``
classes; in-distribution (ID) = test points of those classes; out-of-distribution (OOD) =
test points of the held-out classes and Gaussian-noise inputs. Every measure of
:mod:`tasks.multiplicity.uncertainty` scores every point; tasks: misclassification
detection (AUROC) for the single member's and the BMA's predictions, OOD detection (AUROC),
and the Spearman correlation of aleatoric and epistemic scores on ID vs OOD points.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from models import ModelSpec
from tasks.data_prep import table_to_tensors
from tasks.multiplicity import uncertainty as un
from tasks.multiplicity.common import ci_text, paired
from tasks.train import OptimParams, fit, init_model

DATASETS = ("digits", "mnist1d")


class EnsembleParams(BaseModel):
    """Params of the ``measures_<dataset>`` stages.

    Attributes:
        model, optim: each member's MLP and training.
        seeds: one whole ensemble per seed (>= 5 for CIs).
        members: ensemble size M.
        id_classes: classes 0..id_classes-1 are in-distribution (trained on); the rest are OOD.
        noise_points: Gaussian-noise OOD inputs (per-feature mean/std of the training split).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelSpec = ModelSpec(hidden=(64, 64))
    optim: OptimParams = OptimParams(max_epochs=20, batch_size=64, lr=2e-3)
    seeds: tuple[int, ...] = Field(default=(0, 1, 2, 3, 4), min_length=2)
    members: int = Field(default=8, ge=2)
    id_classes: int = Field(default=8, ge=2)
    noise_points: int = Field(default=200, ge=10)


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


def _keep_classes(t: pa.Table, n: int) -> pa.Table:
    return t.filter(pc.less(t.column("label"), n))


# PAPER: one dataset ------------------------------------------------------------------------
def measures(params: dict, *, train: pa.Table, val: pa.Table, test: pa.Table) -> dict[str, object]:
    """One row per (seed, measure, part, task) with the task's score."""
    p: EnsembleParams = params["ensemble"]
    ds = next(v.dataset for k, v in params.items() if k.startswith("data."))
    tr, va = _keep_classes(train, p.id_classes), _keep_classes(val, p.id_classes)
    x_test, y_test, _ = table_to_tensors(test)
    x_tr, _, _ = table_to_tensors(tr)
    rows, corr_rows = [], []
    for s in p.seeds:
        g = torch.Generator().manual_seed(10_000 + s)
        noise = x_tr.mean(0) + x_tr.std(0) * torch.randn(p.noise_points, x_tr.shape[1], generator=g)
        x_all = torch.cat([x_test, noise])
        is_id = np.r_[y_test.numpy() < p.id_classes, np.zeros(p.noise_points, bool)]
        probs = []
        for j in range(p.members):
            model = init_model(p.model, tr, p.id_classes, 100 * s + j)
            fit(model, p.optim, tr, va, 100 * s + j)
            model.eval()
            with torch.no_grad():
                probs.append(model(x_all).softmax(-1).double().numpy())
        P = np.stack(probs)  # (M, n_all, id_classes)
        y_id = y_test.numpy()[is_id[: len(y_test)]]
        wrong = {"single": P[0][is_id].argmax(1) != y_id, "bma": P.mean(0)[is_id].argmax(1) != y_id}
        for m in un.MEASURES:
            u = un.uncertainty(P, m)
            for part in un.PARTS:
                score = u[part]
                for pred, w in wrong.items():
                    rows.append({"dataset": ds, "seed": s, "measure": m, "part": part,
                                 "task": f"misclassification_{pred}", "auroc": _auroc(w, score[is_id])})
                rows.append({"dataset": ds, "seed": s, "measure": m, "part": part, "task": "ood",
                             "auroc": _auroc(~is_id, score)})
            if m != "A":
                for where, sel in (("id", is_id), ("ood", ~is_id)):
                    rho = stats.spearmanr(u["aleatoric"][sel], u["epistemic"][sel]).statistic
                    corr_rows.append({"dataset": ds, "seed": s, "measure": m, "split": where,
                                      "spearman_ale_epi": float(np.nan_to_num(rho))})
    return {"scores": pa.Table.from_pylist(rows), "correlations": pa.Table.from_pylist(corr_rows),
            "metrics": {"rows": len(rows)}}


# PAPER: report -----------------------------------------------------------------------------
def report(params: None, **tables: pa.Table) -> dict[str, object]:
    from tasks.platform.report import Claim, Report, report_outputs

    rows = [r for d in DATASETS for r in tables[f"scores_{d}"].to_pylist()]
    corr = [r for d in DATASETS for r in tables[f"correlations_{d}"].to_pylist()]

    def vals(measure: str, part: str, task: str) -> dict[tuple, float]:
        return {(r["dataset"], r["seed"]): r["auroc"] for r in rows
                if r["measure"] == measure and r["part"] == part and r["task"] == task and np.isfinite(r["auroc"])}

    claims = []
    # (1) align the measure with the predicting model: member-based (A) for single-member predictions,
    #     BMA-based (D) for BMA predictions
    c1 = paired(vals("A", "total", "misclassification_single"), vals("D", "total", "misclassification_single"))
    c2 = paired(vals("D", "total", "misclassification_bma"), vals("A", "total", "misclassification_bma"))
    claims.append(Claim(
        "on ID data the uncertainty measure should match the predicting model (single member vs BMA)",
        f"misclassification AUROC, single-member predictions, A - D: {ci_text(c1)}; BMA predictions, "
        f"D - A: {ci_text(c2)}",
        "reproduced" if (c1["lo"] > 0 and c2["lo"] > 0) else "not reproduced",
        "both paired CIs above 0 (each prediction is best scored by the measure built on its own model)",
        value=c1["diff"], lo=c1["lo"], hi=c1["hi"],
    ))
    # (2) epistemic measures are limited for OOD: the best epistemic-only does not beat the best total
    def best(part: str) -> tuple[str, dict]:
        cands = {m: vals(m, part, "ood") for m in un.MEASURES if m != "A" or part == "total"}
        m = max(cands, key=lambda k: np.mean(list(cands[k].values())))
        return m, cands[m]
    be, ve = best("epistemic")
    bt, vt = best("total")
    c = paired(ve, vt)
    claims.append(Claim(
        "epistemic uncertainty measures are limited for OOD data",
        f"OOD AUROC, best epistemic ({be}) - best total ({bt}): {ci_text(c)}",
        "reproduced" if c["hi"] > 0 >= c["lo"] or c["hi"] <= 0 else "not reproduced",
        "the best epistemic-only measure does not beat the best total measure (CI covers 0 or lies below it)",
        value=c["diff"], lo=c["lo"], hi=c["hi"],
    ))
    # (3) disentanglement differs between ID and OOD
    key = lambda r: (r["dataset"], r["seed"], r["measure"])  # noqa: E731
    rid = {key(r): r["spearman_ale_epi"] for r in corr if r["split"] == "id"}
    rood = {key(r): r["spearman_ale_epi"] for r in corr if r["split"] == "ood"}
    absdiff = {k: abs(rid[k] - rood[k]) for k in rid if k in rood}
    c3 = paired(absdiff, {k: 0.2 for k in absdiff})
    claims.append(Claim(
        "the disentanglement between measures varies substantially between ID and OOD data",
        f"|Spearman(aleatoric, epistemic) on ID - on OOD| - 0.2: {ci_text(c3)}",
        "reproduced" if c3["lo"] > 0 else "not reproduced",
        "the gap in correlation exceeds 0.2 (CI above 0)",
        value=c3["diff"] + 0.2, lo=c3["lo"] + 0.2, hi=c3["hi"] + 0.2,
    ))
    summary_rows = []
    for m in un.MEASURES:
        for part in un.PARTS:
            for task in ("misclassification_single", "misclassification_bma", "ood"):
                v = list(vals(m, part, task).values())
                if v:
                    summary_rows.append({"measure": m, "part": part, "task": task, "auroc_mean": float(np.mean(v)),
                                         "n": len(v)})
    summary = pa.Table.from_pylist(summary_rows)
    rep = Report(
        title="On Information-Theoretic Measures of Predictive Uncertainty", paper="uncertainty_measures", arxiv="",
        summary=(
            "Deep ensembles of MLPs on digits and mnist1d trained on classes 0-7; OOD = held-out classes 8-9 and "
            "Gaussian-noise inputs. Four measures (A: member/member, B: member/posterior, C: posterior/posterior, "
            "D: BMA/posterior), each with total, aleatoric and epistemic parts, scored on misclassification "
            "detection (single-member and BMA predictions) and OOD detection."
        ),
        claims=claims, tables={"AUROC per measure, part and task (mean over datasets x seeds)": summary},
        notes=["Assumption: the measure grid is our reading of the abstract's two factors; the paper's exact "
               "measures and benchmark suite are not reproduced."],
    )
    metrics = {"verdicts": {cl.claim[:60]: cl.verdict for cl in claims}}
    return {**report_outputs(rep), "summary": summary, "metrics": metrics}
