"""KD recovery of N:M-pruned models and the leakage/calibration audit of ``nm_sparsity``.

Issue #5 (distillation as the recovery step after pruning) and issue #8 (audits usable in
any paper's pipeline), composed for ``nm_sparsity``:

* :func:`distill_pruned` recovers every pruned variant by knowledge distillation from the
  dense model of the same seed (Hinton et al. 2015, ``loss = ce_weight * CE + kd_weight *
  T^2 KL(p_T || p_S)``, ``tasks.methods.kd``), with the pruning mask held fixed, through the
  shared :func:`tasks.distill.distill` core. By default it gets exactly fine-tuning's budget
  (epochs, batch size, learning rate) and data order (seed + ``FINETUNE_SEED_OFFSET``), so
  "fine-tuned" vs "distilled" differ only in the loss.
* :func:`audit` runs the reference-free membership-inference attacks
  (:func:`tasks.audit.audit_models`: members = the training split, non-members = the test
  split) and :func:`tasks.audit.calibration_audit` on the test split, for the dense, pruned
  (no recovery), fine-tuned and distilled models, per seed.
* :func:`audit_summary` / :func:`recovery_section` build the report section "Leakage and
  calibration: dense vs pruned vs fine-tuned vs distilled" (called by
  :func:`tasks.methods.nm_magnitude.report`).

Assumption: the audited non-members are the test split, which is smaller than the training
split; AUC is insensitive to that imbalance, TPR at low FPR is measured on the test rows.
Assumption: these are *our* checks (the NM-SpMM paper makes no privacy or calibration
claim); the report labels them as such.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.methods import nm_magnitude as nm
from tasks.methods.rliable import paired_difference
from tasks.params import Limit, Seeds, SetOf
from tasks.train import OptimParams, TrainParams, init_model, num_classes, torch_threads, unpack_seeds

# --------------------------------------------------------------------------------------------
# PLATFORM: params
# --------------------------------------------------------------------------------------------


def _pick_variants(available, patterns: tuple[str, ...] | None, vectors: tuple[int, ...], what: str) -> list[str]:
    """The variants (``"<n>:<m>_v<v>"``) of ``available`` with v in ``vectors`` (and pattern in
    ``patterns`` unless ``None``), in the prune stage's order; raises if none is left."""
    want = None if patterns is None else {nm.parse_pattern(p) for p in patterns}
    out = []
    for var in available:
        n, m, v = nm.parse_variant(var)
        if v in vectors and (want is None or (n, m) in want):
            out.append(var)
    if not out:
        raise ValueError(f"{what}: no variant of {sorted(available)} matches patterns={patterns}, vectors={list(vectors)}")
    return out


class NMDistillParams(BaseModel):
    """Params of ``nm_sparsity``'s ``distill_<dataset>`` stages (KD recovery after pruning).

    Attributes:
        loss: registered single-head loss (``tasks.methods.kd``); ``kd`` = Hinton KD.
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
        from tasks.methods.kd import check_loss_params, get_loss

        entry = get_loss(self.loss)  # raises listing the registered names
        if entry.heads != 1 or entry.min_teachers > 1:
            raise ValueError(f"loss {self.loss!r} needs {entry.heads} heads / {entry.min_teachers} teachers; "
                             "KD recovery has one head and one (dense) teacher")
        check_loss_params(self.loss, dict(self.loss_params))
        return self


class NMAuditParams(BaseModel):
    """Params of ``nm_sparsity``'s ``audit_<dataset>`` stages.

    Attributes:
        attacks: reference-free attacks (``tasks.audit.audit_models``).
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
        from tasks.audit import REFERENCE_ATTACKS
        from tasks.methods import mia

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
# PAPER: KD recovery of the pruned models (masks fixed)
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
        ``weights`` (``nm_magnitude.pack_variants`` layout, selected variants only) and
        ``metrics`` (per variant: mean test accuracy, masked fraction, masks held; per seed
        details under ``seeds``).
    """
    from tasks.distill import DistillParams, distill

    dp: NMDistillParams = params["distill"]
    ft: OptimParams = params["finetune"]
    train_p: TrainParams = params["train"]
    optim = dp.optim or ft
    variants = _pick_variants(list(nm.unpack_variants(pruned)), dp.patterns, dp.vectors, "distill")
    out: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    metrics: dict[str, Any] = {}
    for var in variants:
        kd_p = DistillParams(
            **optim.model_dump(), teacher=train_p.model, student=train_p.model, seeds=train_p.seeds,
            student_variant=var, loss=dp.loss, loss_params=dict(dp.loss_params),
            fit_seed_offset=nm.FINETUNE_SEED_OFFSET,
        )
        res = distill(kd_p, train=train, val=val, teacher_weights=dense, student_weights=pruned, test=test)
        out[var] = unpack_seeds(res["weights"])
        seeds = res["metrics"]["seeds"]
        metrics[var] = {
            "test_acc_mean": res["metrics"]["test_acc_mean"],
            "masks_held": float(all(m.get("masks_held", False) for m in seeds.values())),
            "masked_fraction": float(np.mean([m.get("masked_fraction", 0.0) for m in seeds.values()])),
            "seeds": {s: {"test_acc": m["test"]["acc"], "val_acc": m["val"]["acc"]} for s, m in seeds.items()},
        }
    return {"weights": nm.pack_variants(out), "metrics": {"loss": dp.loss, "variants": metrics}}


# --------------------------------------------------------------------------------------------
# PLATFORM: the audit of dense, pruned, fine-tuned and distilled models
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
    from tasks.audit import audit_models, calibration_audit
    from tasks.train import accuracy_and_loss

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
        per_var = nm.unpack_variants(packed)
        vectors = p.vectors if kind != "distilled" else tuple({nm.parse_variant(v)[2] for v in per_var})
        for var in _pick_variants(list(per_var), None, vectors, f"audit ({kind})"):
            n, m, _ = nm.parse_variant(var)
            for s in seeds:
                if s not in per_var[var]:
                    raise ValueError(f"{kind} weights of {var} have no seed {s}")
                models.append((kind, var, 1 - n / m, s, per_var[var][s]))

    rows = []
    for kind, var, sparsity, seed, sd in models:
        model = init_model(train_p.model, train, n_classes, seed)
        model.load_state_dict(sd)
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
# PLATFORM: summaries, plot and the report section
# --------------------------------------------------------------------------------------------


def _mean_ci(values, reps: int, alpha: float) -> tuple[float, float, float]:
    """(mean, lo, hi) bootstrap CI over seeds; lo = hi = NaN with a single seed."""
    from tasks.methods.rliable import bootstrap_ci

    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return float(v.mean()), math.nan, math.nan
    return bootstrap_ci(v, "mean", reps, alpha, seed=0)


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
            acc, acc_lo, acc_hi = _mean_ci(g["acc"], reps, alpha)
            auc, auc_lo, auc_hi = _mean_ci(g["auc"], reps, alpha)
            ece, ece_lo, ece_hi = _mean_ci(g["ece"], reps, alpha)
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
        dataset and variant), ``claims`` (list of ``tasks.report.Claim``, labelled as our
        checks), ``figure`` and ``metrics``.
    """
    from tasks.report import Claim

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
            c = paired_difference(kd, ft, reps, alpha)
            rec_rows.append({"dataset": ds, "variant": var, "finetuned_acc": float(np.mean(list(ft.values()))),
                             "distilled_acc": float(np.mean(list(kd.values()))), "diff_pts": c["diff"] * 100,
                             "lo_pts": c["lo"] * 100, "hi_pts": c["hi"] * 100, "kd_wins": c["wins"], "seeds": c["n"]})
    recovery = pa.Table.from_pylist(rec_rows)

    def compare(a_kind: str, b_kind: str, column: str) -> dict[str, float]:
        name = {"dense": "dense"}
        a = _per_pair(results, {ds: name.get(a_kind, f"{a_kind}/{focus_variant}") for ds in results}, column, headline)
        b = _per_pair(results, {ds: name.get(b_kind, f"{b_kind}/{focus_variant}") for ds in results}, column, headline)
        return paired_difference(a, b, reps, alpha)

    def says(c: dict[str, float], scale: float, unit: str) -> str:
        return (f"{c['diff'] * scale:+.2f}{unit} [{100 * (1 - alpha):.0f}% CI {c['lo'] * scale:+.2f}, "
                f"{c['hi'] * scale:+.2f}], a > b on {c['wins']}/{c['n']} (dataset, seed) pairs")

    def verdict(c: dict[str, float], side: str) -> str:
        ok = c["lo"] > 0 if side == ">" else c["hi"] < 0
        return "reproduced" if (not math.isnan(c["lo"]) and ok) else "not reproduced"

    def ci(c, scale=1.0, unit=""):
        if math.isnan(c["lo"]):
            return {"value": c["diff"] * scale, "unit": unit}
        return {"value": c["diff"] * scale, "lo": c["lo"] * scale, "hi": c["hi"] * scale, "unit": unit}

    ours = "Our check (not a claim of the paper): "
    acc = compare("distilled", "finetuned", "acc")
    auc_pd = compare("pruned", "dense", "auc")
    auc_kf = compare("distilled", "finetuned", "auc")
    ece_kf = compare("distilled", "finetuned", "ece")
    rule = f"paired bootstrap CI over (dataset, seed) at {focus_variant}"
    claims = [
        Claim(ours + f"with fine-tuning's budget and masks held fixed, KD from the dense teacher recovers "
              f"{focus_variant} to a higher test accuracy than fine-tuning",
              "distilled - fine-tuned: " + says(acc, 100, " pts"), verdict(acc, ">"),
              f"{rule} must lie above 0 (same epochs, batches and data order; only the loss differs)",
              **ci(acc, 100, "pts")),
        Claim(ours + f"N:M pruning without recovery lowers membership leakage ({headline}-attack AUC, "
              "members = train split, non-members = test split)",
              f"pruned {focus_variant} - dense AUC: " + says(auc_pd, 1, ""), verdict(auc_pd, "<"),
              f"{rule} must lie below 0", **ci(auc_pd)),
        Claim(ours + "KD recovery leaks less membership than fine-tuning (motivated by distillation-for-privacy "
              f"work, e.g. DMP, Shejwalkar & Houmansadr 2021; {headline}-attack AUC)",
              "distilled - fine-tuned AUC: " + says(auc_kf, 1, ""), verdict(auc_kf, "<"),
              f"{rule} must lie below 0", **ci(auc_kf)),
        Claim(ours + "KD recovery gives better-calibrated models than fine-tuning (lower ECE on the test split)",
              "distilled - fine-tuned ECE: " + says(ece_kf, 1, ""), verdict(ece_kf, "<"),
              f"{rule} must lie below 0", **ci(ece_kf)),
    ]
    metrics = {
        "focus_variant": focus_variant,
        "recovery": {f"{r['dataset']}/{r['variant']}": r["diff_pts"] for r in rec_rows},
        "audit_auc": {f"{r['dataset']}/{r['model']}": r["auc_mean"] for r in summary.to_pylist()},
        "audit_ece": {f"{r['dataset']}/{r['model']}": r["ece_mean"] for r in summary.to_pylist()},
    }
    return {"table": summary, "recovery": recovery, "claims": claims, "figure": plot_audit(summary, headline),
            "metrics": metrics}
