"""nm_sparsity: what this paper alone computes (NM-SpMM, arXiv 2503.01253; accuracy side).

The pruning science (patterns, prune, fine-tune, evaluate) is :mod:`tasks.sparsity.nm` and
the serving measurement :mod:`tasks.sparsity.serving`. This module composes them with the
distillation and audit domains for this paper:

* :func:`distill_pruned` recovers every pruned variant by knowledge distillation from the
  dense model of the same seed (Hinton et al. 2015, ``loss = ce_weight * CE + kd_weight *
  T^2 KL(p_T || p_S)``, :mod:`tasks.distill.losses.kd`), with the pruning mask held fixed,
  through the shared :func:`tasks.distill.distill.distill` core. By default it gets exactly
  fine-tuning's budget (epochs, batch size, learning rate) and data order (seed +
  ``FINETUNE_SEED_OFFSET``), so "fine-tuned" vs "distilled" differ only in the loss.
* :func:`audit` runs the reference-free membership-inference attacks
  (:func:`tasks.audit.shadows.audit_models`: members = the training split, non-members = the
  test split) and :func:`tasks.audit.shadows.calibration_audit` on the test split, for the
  dense, pruned (no recovery), fine-tuned and distilled models, per seed.
* :func:`report` judges the paper's claims (the dense vs fine-tuned gap is paired by seed, as
  every comparison in this report), with :func:`audit_summary` / :func:`recovery_section` as
  its section "Leakage and calibration: dense vs pruned vs fine-tuned vs distilled".

Assumption: the audited non-members are the test split, which is smaller than the training
split; AUC is insensitive to that imbalance, TPR at low FPR is measured on the test rows.
Assumption: the audit and recovery checks are *our* checks (the NM-SpMM paper makes no privacy
or calibration claim); the report labels them as such.
"""

from __future__ import annotations

from typing import Annotated, Any, Mapping

import numpy as np
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.audit import mia
from tasks.audit.shadows import REFERENCE_ATTACKS, audit_models, calibration_audit
from tasks.data_prep import num_features
from tasks.distill.distill import DistillParams, distill
from tasks.distill.losses import check_loss_params, get_loss
from tasks.evaluation.seeds import (
    aggregate_table,
    describe,
    interval_fields,
    irt_tables,
    mean_ci,
    paired,
    plot_irt_items,
    poi_table,
    score_matrices,
    verdict,
)
from tasks.multiplicity.metrics import SEED_METRICS, decisions_by_seed, seed_multiplicity
from tasks.platform.errors import ArtifactError
from tasks.platform.params import Limit, Seeds, SetOf
from tasks.platform.report import Claim, Report, report_outputs
from tasks.platform.stage import shared_code_digest
from tasks.platform.tuning import TrialStore, TuningParams, check_spaces, content_digest, run_study, with_values
from tasks.sparsity import nm
from tasks.sparsity.nm import PruneParams, parse_pattern, pick_variants, variant_name
from tasks.train import (
    OptimParams,
    TrainParams,
    accuracy_and_loss,
    evaluate_classifier,
    load_model,
    num_classes,
    pack_groups,
    torch_threads,
    unpack_groups,
    unpack_seeds,
)

# --------------------------------------------------------------------------------------------
# params
# --------------------------------------------------------------------------------------------


class NMDistillParams(BaseModel):
    """Params of ``nm_sparsity``'s ``distill_<dataset>`` stages (KD recovery after pruning).

    Attributes:
        loss: registered single-head loss (``tasks.distill.losses.kd``); ``kd`` = Hinton KD.
        loss_params: its keyword arguments (``kd``: temperature 4, CE 0.1, KD 0.9 by default).
        patterns: N:M patterns to recover (``None`` = every pattern the prune stage made).
        vectors: vector sizes v to recover (default: per-row N:M, v = 1).
        optim: optimiser budget; ``None`` = the ``finetune`` section's (a fair comparison).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    loss: str = "kd"
    loss_params: dict[str, float | int | bool] = Field(default_factory=dict)
    patterns: SetOf[str] | None = None
    vectors: SetOf[int] = Field(default=(1,), min_length=1)
    optim: OptimParams | None = None

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, v):
        if v is not None:
            for p in v:
                nm.parse_pattern(p)
        return v

    @model_validator(mode="after")
    def _loss_fits(self):

        entry = get_loss(self.loss)  # raises listing the registered names
        if entry.heads != 1 or entry.min_teachers > 1:
            raise ValueError(f"loss {self.loss!r} needs {entry.heads} heads / {entry.min_teachers} teachers; "
                             "KD recovery has one head and one (dense) teacher")
        check_loss_params(self.loss, dict(self.loss_params))
        return self


class NMAuditParams(BaseModel):
    """Params of ``nm_sparsity``'s ``audit_<dataset>`` stages.

    Attributes:
        attacks: reference-free attacks (``tasks.audit.shadows.audit_models``).
        headline: the attack whose AUC the summary, plot and claims use.
        fpr: TPR is reported at this FPR (``fpr <= x`` convention).
        n_boot: bootstrap replicates of the per-model CIs (over examples).
        n_bins: calibration bins.
        vectors: vector sizes v of the pruned/fine-tuned variants to audit (distilled: all).
        seeds: seeds to audit (``None`` = every trained seed).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    attacks: tuple[str, ...] = ("loss", "entropy", "modified_entropy", "grad_norm")
    headline: str = "loss"
    fpr: float = Field(default=0.01, gt=0.0, lt=1.0)
    n_boot: Annotated[int, Field(ge=10), Limit("bootstrap")] = 200
    n_bins: int = Field(default=15, ge=2)
    vectors: SetOf[int] = Field(default=(1,), min_length=1)
    seeds: Seeds | None = None

    @field_validator("attacks")
    @classmethod
    def _attacks(cls, v):

        for a in v:
            mia.get_attack(a)
            if a in REFERENCE_ATTACKS:
                raise ValueError(f"attack {a!r} needs shadow models; nm_sparsity audits reference-free only")
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate attacks in {list(v)}")
        return v

    @model_validator(mode="after")
    def _headline(self):
        if self.headline not in self.attacks:
            raise ValueError(f"headline {self.headline!r} is not one of attacks {list(self.attacks)}")
        return self


# --------------------------------------------------------------------------------------------
# KD recovery of the pruned models (masks fixed)
# --------------------------------------------------------------------------------------------


def distill_pruned(
    params: dict[str, BaseModel],
    *,
    dense: dict[str, torch.Tensor],
    pruned: dict[str, torch.Tensor],
    train: pa.Table,
    val: pa.Table,
    test: pa.Table,
) -> dict[str, object]:
    """Recover each selected pruned variant by KD from the dense model of the same seed.

    Args:
        params: ``{"distill": NMDistillParams, "finetune": OptimParams, "train": TrainParams}``.
        dense: packed dense weights (teacher; ``train`` stage).
        pruned: packed pruned weights per variant (``prune`` stage); zeros = fixed masks.
        train, val, test: split tables (test only for the logged metrics).

    Returns:
        ``weights`` (``tasks.train.pack_groups`` layout, selected variants only),
        ``metrics`` (per variant: mean test accuracy, masked fraction, masks held; per seed
        details under ``seeds``) and ``predictions`` (item level on ``test``, model
        ``distilled/<variant>``, as ``evaluate``'s: the report's seed-multiplicity rows).
    """

    dp: NMDistillParams = params["distill"]
    ft: OptimParams = params["finetune"]
    train_p: TrainParams = params["train"]
    optim = dp.optim or ft
    variants = pick_variants(list(unpack_groups(pruned)), dp.patterns, dp.vectors, "distill")
    out: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    metrics: dict[str, Any] = {}
    preds: list[pa.Table] = []
    n_classes = num_classes(train, test)
    for var in variants:
        kd_p = DistillParams(
            **optim.model_dump(), teacher=train_p.model, student=train_p.model, seeds=train_p.seeds,
            student_variant=var, loss=dp.loss, loss_params=dict(dp.loss_params),
            fit_seed_offset=nm.FINETUNE_SEED_OFFSET,
        )
        res = distill(kd_p, train=train, val=val, teacher_weights=dense, student_weights=pruned, test=test)
        out[var] = unpack_seeds(res["weights"])
        for seed, sd in out[var].items():
            name = f"distilled/{var}"
            preds.append(evaluate_classifier(load_model(train_p.model, sd, num_features(test), n_classes, name),
                                             test, name, seed)[1])
        seeds = res["metrics"]["seeds"]
        metrics[var] = {
            "test_acc_mean": res["metrics"]["test_acc_mean"],
            "masks_held": float(all(m.get("masks_held", False) for m in seeds.values())),
            "masked_fraction": float(np.mean([m.get("masked_fraction", 0.0) for m in seeds.values()])),
            "seeds": {s: {"test_acc": m["test"]["acc"], "val_acc": m["val"]["acc"], "epochs": len(m["history"])}
                      for s, m in seeds.items()},
        }
    return {"weights": pack_groups(out), "metrics": {"loss": dp.loss, "variants": metrics},
            "predictions": pa.concat_tables(preds)}


# --------------------------------------------------------------------------------------------
# the audit of dense, pruned, fine-tuned and distilled models
# --------------------------------------------------------------------------------------------

KINDS = ("dense", "pruned", "finetuned", "distilled")
CAL_METRICS = ("acc", "ece", "ece_mass", "classwise_ece", "brier", "nll")

AUDIT_SCHEMA = pa.schema(
    [
        ("model", pa.string()),  # "dense" | "<kind>/<variant>"
        ("kind", pa.string()),  # dense | pruned | finetuned | distilled
        ("variant", pa.string()),  # "<n>:<m>_v<v>" ("dense" for the dense model)
        ("sparsity", pa.float64()),  # 1 - N/M of the pruned layers
        ("seed", pa.int64()),
        ("attack", pa.string()),  # one row per attack; the calibration columns repeat per model
        ("auc", pa.float64()),  # MIA AUC, members = train split, non-members = test split
        ("auc_lo", pa.float64()),  # 95 % stratified bootstrap CI over examples
        ("auc_hi", pa.float64()),
        ("bal_acc", pa.float64()),  # best balanced accuracy over thresholds
        ("fpr", pa.float64()),
        ("tpr_at_fpr", pa.float64()),
        ("n_members", pa.int64()),
        ("n_nonmembers", pa.int64()),
        ("train_acc", pa.float64()),  # accuracy on the members (the generalisation gap's other end)
        *[(f"{k}{s}", pa.float64()) for k in CAL_METRICS for s in ("", "_lo", "_hi")],  # test split
    ]
)


def _audit_one(model: torch.nn.Module, p: NMAuditParams, train: pa.Table, test: pa.Table, seed: int) -> list[dict]:

    mia_res = audit_models(model, train, test, p.attacks, fprs=(p.fpr,), n_boot=p.n_boot, seed=seed)["metrics"]
    cal = calibration_audit(model, test, n_bins=p.n_bins, n_boot=p.n_boot, seed=seed, figure=False)["metrics"]
    train_acc = accuracy_and_loss(model, train)["acc"]
    rows = []
    for r in mia_res.to_pylist():
        rows.append(dict(
            attack=r["attack"], auc=r["auc"], auc_lo=r["auc_lo"], auc_hi=r["auc_hi"], bal_acc=r["bal_acc"],
            fpr=p.fpr, tpr_at_fpr=r[f"tpr_at_{p.fpr:g}_fpr"], n_members=r["n_members"],
            n_nonmembers=r["n_nonmembers"], train_acc=train_acc,
            **{f"{k}{s}": cal[f"{k}{s}"] for k in CAL_METRICS for s in ("", "_lo", "_hi")},
        ))
    return rows


@torch_threads()  # small models: one thread (see tasks.train.torch_threads)
def audit(
    params: dict[str, BaseModel],
    *,
    dense: dict[str, torch.Tensor],
    pruned: dict[str, torch.Tensor],
    finetuned: dict[str, torch.Tensor],
    distilled: dict[str, torch.Tensor],
    train: pa.Table,
    test: pa.Table,
) -> dict[str, object]:
    """Membership leakage and calibration of every model kind, per variant and seed.

    Args:
        params: ``{"audit": NMAuditParams, "train": TrainParams}`` (the architecture).
        dense: packed dense weights; pruned / finetuned / distilled: packed per variant.
        train: the training split = members; test: the test split = non-members and the
            calibration set.

    Returns:
        ``results`` (``AUDIT_SCHEMA``: one row per model, seed and attack), ``plot``
        (headline-attack AUC and ECE by model, mean over seeds with CI), ``metrics``
        (per model: mean AUC of the headline attack, ECE, accuracy).
    """
    p: NMAuditParams = params["audit"]
    train_p: TrainParams = params["train"]
    n_classes = num_classes(train, test)
    dense_seeds = unpack_seeds(dense)
    seeds = list(dense_seeds) if p.seeds is None else list(p.seeds)
    missing = sorted(set(seeds) - set(dense_seeds))
    if missing:
        raise ValueError(f"audit.seeds {missing} were not trained (trained seeds: {sorted(dense_seeds)})")

    models: list[tuple[str, str, float, int, dict[str, torch.Tensor]]] = [
        ("dense", "dense", 0.0, s, dense_seeds[s]) for s in seeds
    ]
    for kind, packed in (("pruned", pruned), ("finetuned", finetuned), ("distilled", distilled)):
        per_var = unpack_groups(packed)
        vectors = p.vectors if kind != "distilled" else tuple({nm.parse_variant(v)[2] for v in per_var})
        for var in pick_variants(list(per_var), None, vectors, f"audit ({kind})"):
            n, m, _ = nm.parse_variant(var)
            for s in seeds:
                if s not in per_var[var]:
                    raise ValueError(f"{kind} weights of {var} have no seed {s}")
                models.append((kind, var, 1 - n / m, s, per_var[var][s]))

    rows = []
    for kind, var, sparsity, seed, sd in models:
        model = load_model(train_p.model, sd, num_features(train), n_classes, f"{kind} {var} seed {seed}")
        model.eval()
        name = "dense" if kind == "dense" else f"{kind}/{var}"
        for r in _audit_one(model, p, train, test, seed):
            rows.append(dict(model=name, kind=kind, variant=var, sparsity=sparsity, seed=seed, **r))
    results = pa.Table.from_pylist(rows, schema=AUDIT_SCHEMA)
    summary = audit_summary({"": results}, p.headline, reps=max(p.n_boot, 100), alpha=0.05)
    metrics = {
        r["model"]: {"auc": r["auc_mean"], "auc_max": r["auc_max_mean"], "ece": r["ece_mean"], "acc": r["acc_mean"]}
        for r in summary.to_pylist()
    }
    return {"results": results, "plot": plot_audit(summary, p.headline), "metrics": metrics}


# --------------------------------------------------------------------------------------------
# summaries, plot and the report section
# --------------------------------------------------------------------------------------------


def audit_summary(results: dict[str, pa.Table], headline: str, reps: int, alpha: float) -> pa.Table:
    """Per dataset and model: mean over seeds with a bootstrap CI (over seeds) of test
    accuracy, the headline attack's AUC and ECE; means of the best attack's AUC, TPR at the
    audit FPR, Brier, NLL and the train - test accuracy gap."""
    rows = []
    for ds, table in results.items():
        df = table.to_pandas()
        head = df[df["attack"] == headline]
        best = df.groupby(["model", "seed"], sort=False)["auc"].max()
        for model, g in head.groupby("model", sort=False):
            g = g.sort_values("seed")
            acc, acc_lo, acc_hi = mean_ci(g["acc"], reps, alpha)
            auc, auc_lo, auc_hi = mean_ci(g["auc"], reps, alpha)
            ece, ece_lo, ece_hi = mean_ci(g["ece"], reps, alpha)
            rows.append(dict(
                dataset=ds, model=model, kind=g["kind"].iloc[0], variant=g["variant"].iloc[0],
                sparsity=float(g["sparsity"].iloc[0]), seeds=len(g),
                acc_mean=acc, acc_lo=acc_lo, acc_hi=acc_hi,
                gap_mean=float((g["train_acc"] - g["acc"]).mean()),
                auc_mean=auc, auc_lo=auc_lo, auc_hi=auc_hi, auc_max_mean=float(best.loc[model].mean()),
                tpr_at_fpr_mean=float(g["tpr_at_fpr"].mean()),
                ece_mean=ece, ece_lo=ece_lo, ece_hi=ece_hi,
                brier_mean=float(g["brier"].mean()), nll_mean=float(g["nll"].mean()),
            ))
    def order(r):  # dense first, then per variant (lowest sparsity, smallest v first): pruned, finetuned, distilled
        v = (0, 0) if r["variant"] == "dense" else (r["sparsity"], nm.parse_variant(r["variant"])[2])
        return (list(results).index(r["dataset"]), v, r["variant"], KINDS.index(r["kind"]))

    return pa.Table.from_pylist(sorted(rows, key=order))


def plot_audit(summary: pa.Table, headline: str):
    """Rows = datasets; left: headline-attack MIA AUC, right: ECE, by model (mean over seeds,
    bars = bootstrap CI over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    df = summary.to_pandas()
    datasets = list(dict.fromkeys(df["dataset"]))
    colors = {"dense": "k", "pruned": "tab:red", "finetuned": "tab:blue", "distilled": "tab:green"}
    fig = Figure(figsize=(11, 3.6 * len(datasets)))
    for i, ds in enumerate(datasets):
        d = df[df["dataset"] == ds].reset_index(drop=True)
        x = np.arange(len(d))
        for j, (col, label) in enumerate(((("auc"), f"MIA AUC ({headline} attack)"), ("ece", "ECE (test)"))):
            ax = fig.add_subplot(len(datasets), 2, 2 * i + j + 1)
            mean, lo, hi = d[f"{col}_mean"], d[f"{col}_lo"], d[f"{col}_hi"]
            err = np.vstack([(mean - lo).fillna(0).clip(lower=0), (hi - mean).fillna(0).clip(lower=0)])
            ax.bar(x, mean, yerr=err, color=[colors[k] for k in d["kind"]], capsize=3)
            if col == "auc":
                ax.axhline(0.5, color="grey", ls=":", lw=0.8)
                ax.set_ylim(max(0.0, float(lo.min(skipna=True) if lo.notna().any() else mean.min()) - 0.05), None)
            ax.set_xticks(x, d["model"], rotation=60, ha="right", fontsize=7)
            ax.set_ylabel(label)
            ax.set_title(f"{ds} {label}".strip())
    fig.tight_layout()
    return fig


def _per_pair(results: dict[str, pa.Table], model_of: dict[str, str], column: str, headline: str) -> dict:
    """``{(dataset, seed): value}`` of ``column`` (headline-attack rows) for the model named
    ``model_of[dataset]`` (skips datasets without that model)."""
    out = {}
    for ds, table in results.items():
        df = table.to_pandas()
        g = df[(df["attack"] == headline) & (df["model"] == model_of.get(ds, ""))]
        out.update({(ds, int(s)): float(v) for s, v in zip(g["seed"], g[column])})
    return out


def focus_of(results: dict[str, pa.Table]) -> str:
    """The distilled variant the claims rest on: largest N/M, then smallest v (``2:4_v1``)."""
    variants = {v for t in results.values() for v, k in zip(t.column("variant").to_pylist(), t.column("kind").to_pylist())
                if k == "distilled"}
    if not variants:
        raise ValueError("the audit tables hold no distilled model")
    return min(variants, key=lambda v: (-nm.parse_variant(v)[0] / nm.parse_variant(v)[1], nm.parse_variant(v)[2]))


def recovery_section(
    results: dict[str, pa.Table], headline: str, reps: int, alpha: float, focus_variant: str | None = None
) -> dict[str, Any]:
    """The report's "Leakage and calibration: dense vs pruned vs fine-tuned vs distilled".

    Comparisons are paired by (dataset, seed): same dense model, same pruning mask, same
    fine-tuning/KD budget and data order. ``focus_variant`` (default :func:`focus_of`: the
    lowest-sparsity distilled variant, ``"2:4_v1"``) carries the claims; the tables show
    every variant.

    Returns:
        ``table`` (audit summary), ``recovery`` (distilled - fine-tuned test accuracy per
        dataset and variant), ``claims`` (list of ``tasks.platform.report.Claim``, labelled as our
        checks), ``figure`` and ``metrics``.
    """

    focus_variant = focus_variant or focus_of(results)
    summary = audit_summary(results, headline, reps, alpha)
    rec_rows = []
    for ds, table in results.items():
        variants = sorted(set(table.column("variant").to_pylist()) - {"dense"},
                          key=lambda v: (nm.parse_variant(v)[2], -nm.parse_variant(v)[0] / nm.parse_variant(v)[1]))
        for var in variants:
            kd = _per_pair({ds: table}, {ds: f"distilled/{var}"}, "acc", headline)
            ft = _per_pair({ds: table}, {ds: f"finetuned/{var}"}, "acc", headline)
            if not kd or not ft:
                continue
            c = paired(kd, ft, reps, alpha, min_n=0)
            rec_rows.append({"dataset": ds, "variant": var, "finetuned_acc": float(np.mean(list(ft.values()))),
                             "distilled_acc": float(np.mean(list(kd.values()))), "diff_pts": c["diff"] * 100,
                             "lo_pts": c["lo"] * 100, "hi_pts": c["hi"] * 100, "kd_wins": c["wins"], "seeds": c["n"]})
    recovery = pa.Table.from_pylist(rec_rows)

    def compare(a_kind: str, b_kind: str, column: str) -> dict[str, float]:
        name = {"dense": "dense"}
        a = _per_pair(results, {ds: name.get(a_kind, f"{a_kind}/{focus_variant}") for ds in results}, column, headline)
        b = _per_pair(results, {ds: name.get(b_kind, f"{b_kind}/{focus_variant}") for ds in results}, column, headline)
        return paired(a, b, reps, alpha, min_n=0)

    def says(c: dict[str, float], scale: float, unit: str) -> str:
        return describe(c, scale, unit, alpha, over="(dataset, seed) pairs")

    ours = "Our check (not a claim of the paper): "
    acc = compare("distilled", "finetuned", "acc")
    auc_pd = compare("pruned", "dense", "auc")
    auc_kf = compare("distilled", "finetuned", "auc")
    ece_kf = compare("distilled", "finetuned", "ece")
    rule = f"paired bootstrap CI over (dataset, seed) at {focus_variant}"
    claims = [
        Claim(ours + f"with fine-tuning's budget and masks held fixed, KD from the dense teacher recovers "
              f"{focus_variant} to a higher test accuracy than fine-tuning",
              "distilled - fine-tuned: " + says(acc, 100, "pts"), verdict(acc, ">"),
              f"{rule} must lie above 0 (same epochs, batches and data order; only the loss differs)",
              **interval_fields(acc, 100, "pts")),
        Claim(ours + f"N:M pruning without recovery lowers membership leakage ({headline}-attack AUC, "
              "members = train split, non-members = test split)",
              f"pruned {focus_variant} - dense AUC: " + says(auc_pd, 1, ""), verdict(auc_pd, "<"),
              f"{rule} must lie below 0", **interval_fields(auc_pd)),
        Claim(ours + "KD recovery leaks less membership than fine-tuning (motivated by distillation-for-privacy "
              f"work, e.g. DMP, Shejwalkar & Houmansadr 2021; {headline}-attack AUC)",
              "distilled - fine-tuned AUC: " + says(auc_kf, 1, ""), verdict(auc_kf, "<"),
              f"{rule} must lie below 0", **interval_fields(auc_kf)),
        Claim(ours + "KD recovery gives better-calibrated models than fine-tuning (lower ECE on the test split)",
              "distilled - fine-tuned ECE: " + says(ece_kf, 1, ""), verdict(ece_kf, "<"),
              f"{rule} must lie below 0", **interval_fields(ece_kf)),
    ]
    metrics = {
        "focus_variant": focus_variant,
        "recovery": {f"{r['dataset']}/{r['variant']}": r["diff_pts"] for r in rec_rows},
        "audit_auc": {f"{r['dataset']}/{r['model']}": r["auc_mean"] for r in summary.to_pylist()},
        "audit_ece": {f"{r['dataset']}/{r['model']}": r["ece_mean"] for r in summary.to_pylist()},
    }
    return {"table": summary, "recovery": recovery, "claims": claims, "figure": plot_audit(summary, headline),
            "metrics": metrics}


class ReportParams(BaseModel):
    """Params of the ``report`` stage.

    Attributes:
        reps: bootstrap replicates for the confidence intervals over seeds.
        alpha: 1 - confidence level.
        tolerance_pts: "fine-tuned 2:4 matches dense" means a mean accuracy gap of at most
            this many percentage points.
        matmul_atol: the compressed reference matmul must match dense-with-zeros within this.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    reps: Annotated[int, Field(ge=100), Limit("bootstrap")] = 2000
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    tolerance_pts: float = Field(default=1.0, ge=0.0)
    matmul_atol: float = Field(default=1e-4, gt=0.0)


SUMMARY_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("model", pa.string()),
        ("stage", pa.string()),
        ("pattern", pa.string()),
        ("v", pa.int64()),
        ("sparsity", pa.float64()),
        ("seeds", pa.int64()),
        ("acc_mean", pa.float64()),
        ("acc_lo", pa.float64()),
        ("acc_hi", pa.float64()),
        ("loss_mean", pa.float64()),
        ("params_nonzero", pa.int64()),
        ("weight_bytes", pa.int64()),
    ]
)


def summarize(results: dict[str, pa.Table], p: ReportParams) -> pa.Table:
    """Mean test accuracy over seeds with a (1 - alpha) bootstrap CI, per dataset and model."""
    rows = []
    for dataset, table in results.items():
        df = table.to_pandas()
        for model, g in df.groupby("model", sort=False):
            point, lo, hi = mean_ci(g["acc"].to_numpy(), p.reps, p.alpha)
            first = g.iloc[0]
            rows.append(
                dict(dataset=dataset, model=model, stage=first["stage"], pattern=first["pattern"],
                     v=int(first["v"]), sparsity=float(first["sparsity"]), seeds=len(g),
                     acc_mean=point, acc_lo=lo, acc_hi=hi, loss_mean=float(g["loss"].mean()),
                     params_nonzero=int(g["params_nonzero"].iloc[0]), weight_bytes=int(g["weight_bytes"].iloc[0]))
            )
    return pa.Table.from_pylist(rows, schema=SUMMARY_SCHEMA)


def plot_accuracy_vs_sparsity(summary: pa.Table):
    """One panel per dataset: test accuracy (mean, CI band) against sparsity, per stage and v."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    df = summary.to_pandas()
    datasets = list(dict.fromkeys(df["dataset"]))
    fig = Figure(figsize=(5.5 * len(datasets), 4))
    for i, ds in enumerate(datasets):
        ax = fig.add_subplot(1, len(datasets), i + 1)
        d = df[df["dataset"] == ds]
        dense = d[d["stage"] == "dense"].iloc[0]
        for (stage, v), g in d[d["stage"] != "dense"].groupby(["stage", "v"]):
            # NOTE: 1:4 and 2:8 share 75% sparsity; the line averages neither, it shows both points.
            g = g.sort_values(["sparsity", "pattern"])
            label = f"{stage}, v={v}"
            ax.plot(g["sparsity"] * 100, g["acc_mean"] * 100, marker="o", label=label)
            ax.fill_between(g["sparsity"] * 100, g["acc_lo"] * 100, g["acc_hi"] * 100, alpha=0.2)
        ax.axhline(dense["acc_mean"] * 100, color="k", ls="--", label="dense")
        ax.axhspan(dense["acc_lo"] * 100, dense["acc_hi"] * 100, color="k", alpha=0.1)
        ax.set_title(ds)
        ax.set_xlabel("sparsity of pruned layers (%)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=8)
    return fig


def _row(summary, dataset: str, model: str) -> dict:
    for r in summary.to_pylist():
        if r["dataset"] == dataset and r["model"] == model:
            return r
    raise KeyError(f"{dataset}/{model} not in the summary")


def seed_statistics(
    results: dict[str, pa.Table], predictions: dict[str, pa.Table], p: ReportParams, prune_p: PruneParams
) -> dict[str, object]:
    """rliable aggregates over seeds x datasets, P(improvement) and 2PL IRT over test items.

    Compares the dense model with the pruned and fine-tuned models at the lowest sparsity
    (largest N/M) and smallest v. Returns tables, figures and headline numbers for ``report``.
    """

    n, m = max((parse_pattern(x) for x in prune_p.patterns), key=lambda nm_: nm_[0] / nm_[1])
    first = variant_name(n, m, min(prune_p.vectors))
    focus = ["dense", f"pruned/{first}", f"finetuned/{first}"]
    mats = score_matrices(results, "acc")  # model -> (seeds, datasets)
    aggregates = aggregate_table(mats, ("mean", "median", "iqm"), p.reps, p.alpha)
    poi, poi_fig = poi_table({k: mats[k] for k in focus}, p.reps, p.alpha)
    groups = {"dense_vs_pruned": focus[:2], "dense_vs_finetuned": [focus[0], focus[2]]}
    items, per_dataset, abilities = {}, [], []
    for ds, preds in predictions.items():
        resp, it, _ = irt_tables(preds, groups=groups)
        items[ds] = it
        flags = it.column("flag").to_pylist()
        per_dataset.append({
            "dataset": ds, "items": it.num_rows,
            **{f: flags.count(f) for f in ("constant", "low_discrimination", "negative_correlation")},
            **{f"separating_{g}": sum(x > 0.5 for x in it.column(f"sep_{g}").to_pylist()) for g in groups},
        })
        r = resp.to_pandas().groupby("model", sort=False)[["ability", "ability_se", "accuracy"]].mean()
        abilities += [{"dataset": ds, "model": k, **{c: float(v) for c, v in row.items()}}
                      for k, row in r.iterrows() if k in focus]
    item_table = pa.concat_tables(
        [t.add_column(0, "dataset", pa.array([ds] * t.num_rows, pa.string())) for ds, t in items.items()]
    )
    return {
        "focus": focus,
        "aggregates": aggregates,
        "poi": poi,
        "poi_fig": poi_fig,
        "irt_summary": pa.Table.from_pylist(per_dataset),
        "abilities": pa.Table.from_pylist(abilities),
        "items": item_table,
        "irt_fig": plot_irt_items(items, "sep_dense_vs_finetuned"),
    }


def seed_multiplicity_table(predictions: dict[str, pa.Table], summary: pa.Table,
                            distilled: Mapping[str, pa.Table] | None = None) -> pa.Table | None:
    """Per dataset and model (dense, pruned, fine-tuned, and KD-recovered from ``distilled``: item-level
    predictions of ``distill_<dataset>``), how much its test decisions move between training seeds,
    next to its accuracy below the dense model's.

    Columns: ``dataset``, ``model``, ``seeds``, ``acc_below_dense`` (mean dense accuracy minus
    the model's, a fraction) and :data:`tasks.multiplicity.metrics.SEED_METRICS` (shares of test
    items). A pruning gap smaller than the dense model's seed-to-seed ``churn`` is within the
    decisions that retraining with another seed changes anyway. ``None`` with a single seed.
    A distilled model's accuracy is the mean of its item-level ``correct`` (the same test items).
    """
    acc = {(r["dataset"], r["model"]): r["acc_mean"] for r in summary.to_pylist()}
    for ds, preds in (distilled or {}).items():
        names = np.asarray(preds.column("model").to_pylist())
        correct = np.asarray(preds.column("correct").to_pylist(), dtype=float)
        for model in dict.fromkeys(names.tolist()):
            acc[(ds, model)] = float(correct[names == model].mean())
        predictions = {**predictions, ds: pa.concat_tables([predictions[ds], preds])}
    rows = []
    for ds, preds in predictions.items():
        for model in dict.fromkeys(preds.column("model").to_pylist()):
            dec = decisions_by_seed(preds, model)
            if dec.shape[0] < 2:
                return None
            m = seed_multiplicity(dec)
            rows.append({"dataset": ds, "model": model, "seeds": int(m["n_models"]),
                         "acc_below_dense": acc[(ds, "dense")] - acc[(ds, model)],
                         **{k: m[k] for k in SEED_METRICS}})
    return pa.Table.from_pylist(rows) if rows else None


def serving_table(serving: dict[str, pa.Table]) -> pa.Table:
    """Per dataset, variant and batch: median latency of dense vs NMLinear, speed-up, bytes, accuracy."""
    frames = []
    for ds, table in serving.items():
        df = table.to_pandas()
        g = df.groupby(["model", "batch"], sort=False).agg(
            dense_ms=("dense_ms", "median"), nm_ms=("nm_ms", "median"), speedup=("speedup", "median"),
            dense_bytes=("dense_bytes", "first"), nm_bytes=("nm_bytes", "first"), acc_nm=("acc_nm", "mean"),
            max_abs_logit_diff=("max_abs_logit_diff", "max"),
        ).reset_index()
        g.insert(0, "dataset", ds)
        frames.append(g)
    import pandas as pd

    return pa.Table.from_pandas(pd.concat(frames, ignore_index=True), preserve_index=False)


def report(params: dict[str, BaseModel], **inputs: pa.Table) -> dict[str, object]:
    """Aggregate every dataset's results and judge the paper's claims.

    Args:
        params: ``{"report": ReportParams, "prune": PruneParams}`` (+ ``"audit"``:
            ``nm_recovery.NMAuditParams`` when audit tables are given).
        **inputs: per dataset, ``results_<dataset>`` (``RESULTS_SCHEMA``), ``predictions_<dataset>``
            (item level), optionally ``serving_<dataset>`` (``nm_serving.SERVE_SCHEMA``),
            ``audit_<dataset>`` (``nm_recovery.AUDIT_SCHEMA``) and ``distilled_predictions_<dataset>``
            (item level, the KD-recovered models: their rows in the seed-multiplicity table).

    Returns:
        ``report`` (markdown), ``summary`` (``SUMMARY_SCHEMA``), ``plot`` (PNG figure),
        ``metrics`` (verdicts and headline numbers); with audit tables also ``audit`` (figure:
        leakage and calibration by model) and ``audit_summary`` (table).
    """
    p: ReportParams = params["report"]
    prune_p: PruneParams = params["prune"]
    results = {k.removeprefix("results_"): v for k, v in inputs.items() if k.startswith("results_")}
    predictions = {k.removeprefix("predictions_"): v for k, v in inputs.items() if k.startswith("predictions_")}
    distilled = {k.removeprefix("distilled_predictions_"): v for k, v in inputs.items()
                 if k.startswith("distilled_predictions_")}
    serving = {k.removeprefix("serving_"): v for k, v in inputs.items() if k.startswith("serving_")}
    audits = {k.removeprefix("audit_"): v for k, v in inputs.items() if k.startswith("audit_")}
    recovery = None
    if audits:
        recovery = recovery_section(audits, params["audit"].headline, p.reps, p.alpha)
    summary = summarize(results, p)
    stats = seed_statistics(results, predictions, p, prune_p)
    all_rows = pa.concat_tables(results.values()).to_pandas()
    max_err = float(all_rows["matmul_max_abs_err"].max())

    # Claim 1: the compressed format + reference SpMM compute the same product.
    claims = [
        Claim(
            "N:M-sparse x dense matmul from the compressed format (values + in-group indices) "
            "equals dense GEMM with zeros",
            f"max |error| = {max_err:.2e} over every pruned layer, variant and seed",
            "reproduced" if max_err <= p.matmul_atol else "not reproduced",
            f"rule: max |error| <= {p.matmul_atol:g} (fp32)",
            value=max_err,
        )
    ]
    # Claim 2: accuracy degrades gracefully with sparsity (the premise the kernel rests on).
    lines, ok, worst = [], True, None
    v0 = min(prune_p.vectors)
    for ds in results:
        dense = _row(summary, ds, "dense")
        ft = sorted(
            (r for r in summary.to_pylist() if r["dataset"] == ds and r["stage"] == "finetuned" and r["v"] == v0),
            key=lambda r: r["sparsity"],
        )
        if not ft:
            continue
        first = ft[0]
        gap = (dense["acc_mean"] - first["acc_mean"]) * 100
        # CI of the gap: dense - fine-tuned, paired by seed (both start from the same seed's dense model)
        acc = {m: dict(zip(g["seed"], g["acc"])) for m, g in results[ds].to_pandas().groupby("model")}
        gap_c = paired(acc["dense"], acc[first["model"]], p.reps, p.alpha, min_n=0)
        gap_ci = (gap_c["lo"] * 100, gap_c["hi"] * 100)
        if worst is None or gap > worst[0]:
            worst = (gap, *gap_ci)
        # best pattern at each sparsity level (1:4 and 2:8 share 75%), in increasing sparsity
        best: dict[float, float] = {}
        for r in ft:
            best[r["sparsity"]] = max(best.get(r["sparsity"], 0.0), r["acc_mean"])
        means = [best[s] for s in sorted(best)]
        monotone = all(b <= a + 0.005 for a, b in zip(means, means[1:]))
        ok &= gap <= p.tolerance_pts and monotone
        lines.append(
            f"{ds}: dense {dense['acc_mean']:.3f} [{dense['acc_lo']:.3f}, {dense['acc_hi']:.3f}], "
            f"fine-tuned {first['pattern']} {first['acc_mean']:.3f} [{first['acc_lo']:.3f}, {first['acc_hi']:.3f}] "
            f"(gap {gap:.2f} pts, paired CI [{gap_ci[0]:.2f}, {gap_ci[1]:.2f}]); "
            f"accuracy non-increasing with sparsity: {monotone}"
        )
    dense_ft = next(r for r in stats["poi"].to_pylist() if r["x"] == "dense" and r["y"] == stats["focus"][2])
    lines.append(
        f"P(dense > {stats['focus'][2]}) over seeds x datasets = {dense_ft['p_x_beats_y']:.2f} "
        f"[{dense_ft['lo']:.2f}, {dense_ft['hi']:.2f}]"
    )
    claims.append(
        Claim(
            "N:M pruning keeps accuracy: at 50% (2:4) a fine-tuned model matches the dense one, and "
            "accuracy falls gracefully as N/M falls",
            "; ".join(lines),
            "reproduced" if ok else "not reproduced",
            f"rule: mean gap at the lowest sparsity <= {p.tolerance_pts:g} pts and mean fine-tuned accuracy "
            "non-increasing with sparsity (0.5 pt slack), on every dataset; value = the largest gap (pts)",
            **({"value": worst[0], "lo": worst[1], "hi": worst[2], "unit": "pts"} if worst else {}),
        )
    )
    claims += [
        Claim(
            "1.4x to 6.3x faster than cuBLAS dense GEMM, close to the theoretical M/N peak",
            "see benchmarks/results/kernels_*.json (`make bench-kernels`)",
            "not testable at this scale",
            "needs the paper's GPU setup (A100 FP32 CUDA cores vs cuBLAS); this pipeline runs on 2 CPU cores",
        ),
        Claim(
            "2.1x faster than nmSPARSE",
            "not measured",
            "not testable at this scale",
            "nmSPARSE needs a CUDA GPU; no GPU in this run",
        ),
    ]
    if recovery is not None:
        claims += recovery["claims"]
    show = summary.select(
        ["dataset", "model", "sparsity", "seeds", "acc_mean", "acc_lo", "acc_hi", "params_nonzero", "weight_bytes"]
    )
    seeds = sorted(set(all_rows["seed"]))
    mult = seed_multiplicity_table(predictions, summary, distilled)
    rep = Report(
        title="NM-SpMM: general N:M sparse matrix multiplication (accuracy side and format)",
        paper="nm_sparsity",
        arxiv="2503.01253",
        summary=(
            f"Dense MLPs trained on {', '.join(results)} with seeds {seeds}; magnitude N:M pruning of the "
            f"hidden layers to {', '.join(prune_p.patterns)} with vector sizes v = {list(prune_p.vectors)} "
            "(v = 32 is NM-SpMM's shared-pattern layout), then fine-tuning with the mask held fixed. "
            f"Test accuracy is the mean over seeds with a {100 * (1 - p.alpha):.0f}% bootstrap CI."
        ),
        claims=claims,
        tables={
            "Accuracy vs sparsity (test set)": show,
            "Aggregate test accuracy over seeds x datasets (rliable: stratified bootstrap CIs)": stats["aggregates"],
            "Probability of improvement P(x > y) over seeds x datasets": stats["poi"],
            "Item response theory (2PL) over test items, per dataset": stats["irt_summary"],
            "Model ability (2PL), mean over seeds": stats["abilities"],
            **(
                {"Seed-to-seed multiplicity (test decisions; churn = mean share of test items two seeds of a model "
                 "decide differently, discrepancy = the largest such share, ambiguity = share of items the seeds do "
                 "not decide unanimously; acc_below_dense = dense - model accuracy, a pruning gap below the dense "
                 "model's churn is within what a retrain with another seed changes)": mult} if mult is not None else {}
            ),
            **(
                {"Serving the fine-tuned models through NMLinear (medians over seeds; batch 0 = whole test set)":
                 serving_table(serving)} if serving else {}
            ),
            **(
                {"Leakage and calibration: dense vs pruned vs fine-tuned vs distilled (test split; "
                 f"MIA: {params['audit'].headline} attack, members = train split, non-members = test split; "
                 "mean over seeds with bootstrap CI over seeds; gap = train - test accuracy)":
                 recovery["table"].drop_columns(["kind", "variant"]),
                 "Recovery after pruning: distilled (KD from the dense teacher) vs fine-tuned, same budget, "
                 "masks fixed (test accuracy; diff = distilled - fine-tuned, paired over seeds)":
                 recovery["recovery"]} if recovery is not None else {}
            ),
        },
        figures={
            "Accuracy vs sparsity": "accuracy_vs_sparsity.png",
            "Probability of improvement": "probability_of_improvement.png",
            "2PL item parameters (colour: how well an item separates dense from fine-tuned)": "irt_items.png",
            **({"Leakage (MIA AUC) and calibration (ECE) by model": "leakage_calibration.png"}
               if recovery is not None else {}),
        },
        notes=(
            "The paper is a GPU kernel paper evaluated on LLaMA-sized GEMMs; the models here are small MLPs "
            "on digits/mnist1d, so we test the format, the pruning recipe the kernel assumes, and the accuracy "
            "price of NM-SpMM's v = 32 layout, not the GPU speed-ups.",
        ),
    )
    metrics = {
        "matmul_max_abs_err": max_err,
        "verdicts": {f"claim_{i + 1}": c.verdict for i, c in enumerate(claims)},
        "acc": {f"{r['dataset']}/{r['model']}": r["acc_mean"] for r in summary.to_pylist()},
        "iqm_acc": {r["model"]: r["point"] for r in stats["aggregates"].to_pylist() if r["aggregate"] == "iqm"},
        **({"seed_churn": {f"{r['dataset']}/{r['model']}": r["churn"] for r in mult.to_pylist()}}
           if mult is not None else {}),
        "p_improvement": {f"{r['x']} beats {r['y']}": r["p_x_beats_y"] for r in stats["poi"].to_pylist()},
    }
    out = {
        **report_outputs(rep),
        "summary": summary,
        "plot": plot_accuracy_vs_sparsity(summary),
        "metrics": metrics,
        "poi": stats["poi_fig"],
        "irt": stats["irt_fig"],
        "items": stats["items"],
    }
    if recovery is not None:
        metrics.update({k: v for k, v in recovery["metrics"].items() if k != "focus_variant"})
        out.update(audit=recovery["figure"], audit_summary=recovery["table"])
    return out


# --------------------------------------------------------------------------------------------
# issue #17: fine-tuning vs KD recovery, each tuned on the same budget
# --------------------------------------------------------------------------------------------

RECOVERY_ARMS = ("finetune", "kd")


def recovery_settings(ft: OptimParams, dp: NMDistillParams) -> dict[str, dict[str, Any]]:
    """The two recovery arms at the paper's settings, as nested dicts (:mod:`tasks.platform.tuning`):
    ``finetune`` = its optimiser; ``kd`` = its optimiser (fine-tuning's unless ``distill.optim``)
    plus the loss."""
    kd_optim = (dp.optim or ft).model_dump(mode="json")
    return {"finetune": ft.model_dump(mode="json"),
            "kd": {**kd_optim, "loss": dp.loss, "loss_params": dict(dp.loss_params)}}


def recovery_arm_params(arm: str, config: Mapping[str, Any], dp: NMDistillParams) -> OptimParams | NMDistillParams:
    """``finetune``: its :class:`OptimParams`; ``kd``: ``dp`` with the config's loss and optimiser."""
    optim = OptimParams.model_validate({k: config[k] for k in OptimParams.model_fields})
    if arm == "finetune":
        return optim
    return NMDistillParams.model_validate(
        {**dp.model_dump(), "loss": config["loss"], "loss_params": dict(config["loss_params"]), "optim": optim.model_dump()}
    )


def check_recovery_tuning(ft: OptimParams, dp: NMDistillParams, tuning: TuningParams, seeds: tuple[int, ...]) -> None:
    """The ``tuning`` section against the recovery arms (call from the params validator)."""
    check_spaces(tuning.spaces, recovery_settings(ft, dp), lambda arm, cfg: recovery_arm_params(arm, cfg, dp))
    missing = sorted(set(tuning.budget.seeds) - set(seeds))
    if missing:
        raise ValueError(f"tuning.budget.seeds: seed(s) {missing} not in train.seeds = {list(seeds)}")


def recovery_focus(pruned: dict[str, torch.Tensor], dp: NMDistillParams) -> str:
    """The variant the recovery is tuned on: the distilled variant the claims rest on
    (largest N/M, then smallest v: :func:`focus_of`'s rule)."""
    variants = pick_variants(list(unpack_groups(pruned)), dp.patterns, dp.vectors, "distill")
    return min(variants, key=lambda v: (-nm.parse_variant(v)[0] / nm.parse_variant(v)[1], nm.parse_variant(v)[2]))


def tune_recovery(
    params: dict[str, BaseModel],
    *,
    dense: dict[str, torch.Tensor],
    pruned: dict[str, torch.Tensor],
    train: pa.Table,
    val: pa.Table,
) -> dict[str, Any]:
    """Stage core of ``tune_<dataset>``: fine-tuning and KD recovery of the focus variant, each
    searched on the validation split with the same budget (``params`` = ``{"tuning",
    "finetune", "distill", "train"}``). One trial recovers the focus variant of each budget seed
    through the same cores as the recovery stages (:func:`tasks.sparsity.nm.finetune`,
    :func:`distill_pruned`). The chosen configuration is then applied to every variant."""
    tuning: TuningParams = params["tuning"]
    ft: OptimParams = params["finetune"]
    dp: NMDistillParams = params["distill"]
    train_p: TrainParams = params["train"]
    focus = recovery_focus(pruned, dp)

    def fit_score(arm: str, config: dict[str, Any], seed: int, val_split: pa.Table) -> tuple[float, int]:
        one = {k: v for k, v in pruned.items() if k.startswith(f"{focus}/{seed}.")}  # this variant and seed
        tp = train_p.model_copy(update={"seeds": (seed,)})
        p = recovery_arm_params(arm, config, dp)
        if arm == "finetune":
            last = nm.finetune({"finetune": p, "train": tp}, pruned=one, train=train, val=val_split)["metrics"]["final"]
            m = last[f"{focus}.{seed}"]
            return m["val_acc"], int(m["epoch"]) + 1
        res = distill_pruned({"distill": p, "finetune": ft, "train": tp}, dense=dense, pruned=one, train=train,
                             val=val_split, test=val_split)  # NOTE: "test" here only names the scored split
        m = res["metrics"]["variants"][focus]["seeds"][str(seed)]
        return m["val_acc"], m["epochs"]

    context = content_digest({"dense": dense, "pruned": pruned, "train": train, "train_p": train_p,
                              "code": shared_code_digest()})
    res = run_study(recovery_settings(ft, dp), tuning.spaces, tuning.budget, fit_score, val=val, context=context,
                    store=TrialStore.default(), validate=lambda arm, cfg: recovery_arm_params(arm, cfg, dp))
    return {"trials": res.trials, "tuned": {**res.to_json(), "focus_variant": focus}}


def _tuned_config(arm: str, tuned: Mapping[str, Any], ft: OptimParams, dp: NMDistillParams) -> dict[str, Any]:
    entry = tuned["arms"][arm]
    if with_values(recovery_settings(ft, dp)[arm], entry["tuned"]) != entry["config"]:
        raise ArtifactError(f"tuned.json's configuration of arm {arm!r} does not match its params: rerun tune")
    return entry["config"]


def finetune_tuned(params: dict[str, BaseModel], *, tuned: Mapping[str, Any], **inputs: Any) -> dict[str, object]:
    """``finetune_<dataset>_tuned``: every variant fine-tuned with the tuned optimiser."""
    cfg = _tuned_config("finetune", tuned, params["finetune"], params["distill"])
    return nm.finetune({"finetune": recovery_arm_params("finetune", cfg, params["distill"]), "train": params["train"]},
                       **inputs)


def distill_pruned_tuned(params: dict[str, BaseModel], *, tuned: Mapping[str, Any], **inputs: Any) -> dict[str, object]:
    """``distill_<dataset>_tuned``: KD recovery with the tuned loss and optimiser."""
    cfg = _tuned_config("kd", tuned, params["finetune"], params["distill"])
    return distill_pruned({**params, "distill": recovery_arm_params("kd", cfg, params["distill"])}, **inputs)


def recovery_acc(name: str, audit: pa.Table) -> dict[int, float]:
    """``{seed: test accuracy}`` of ``<kind>_<dataset>`` (kind: pruned, finetuned, distilled) at the
    focus variant, from an audit table (the under-tuning checks' values)."""
    kind = name.split("_", 1)[0]
    focus = focus_of({"_": audit})
    first_attack = audit.column("attack")[0].as_py()
    return {int(r["seed"]): float(r["acc"]) for r in audit.to_pylist()
            if r["kind"] == kind and r["variant"] == focus and r["attack"] == first_attack}

