"""negative_flips: what this paper alone computes (margin-preserving updates without regression).

The old-model class selection, the flip metrics and their evaluation, and the report. The
losses (focal KD on old classes, MPT) are :mod:`tasks.distill.losses.flips`.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import torch
from pydantic import BaseModel, ConfigDict, Field

from tasks.data_prep import num_features, table_to_tensors
from tasks.evaluation.seeds import arm_table, comparison_table, describe, paired, per_seed, verdict
from tasks.multiplicity.metrics import SEED_METRICS, seed_multiplicity
from tasks.platform.errors import ReprolabError
from tasks.platform.report import Claim, Report, report_outputs
from tasks.train import head_classes, load_model, predict_logits, unpack_seeds


class OldClassesParams(BaseModel):
    """Params of the ``select_old_classes`` stage.

    Attributes:
        n_old: the old model sees classes ``0 .. n_old-1`` only.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_old: int = Field(default=6, ge=2)


def select_old_classes(params: OldClassesParams, *, train: pa.Table, val: pa.Table) -> dict[str, pa.Table]:
    """Keep the rows with ``label < n_old`` of the train and val splits (old model's data)."""
    out = {}
    for name, table in (("train", train), ("val", val)):
        kept = table.filter(pc.less(table.column("label"), params.n_old))
        if kept.num_rows == 0:
            raise ReprolabError(f"select_old_classes: no {name} rows with label < {params.n_old}")
        out[name] = kept
    return out


def flip_metrics(old_logits: torch.Tensor, new_logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Negative-flip rate and accuracies of an update.

    Args:
        old_logits: (n, C_old) old model logits on the test split.
        new_logits: (n, C) updated model logits on the same rows.
        y: (n,) labels in ``[0, C)``.

    Returns:
        ``nfr``: #(old right and new wrong) / #(old-class samples);
        ``acc``, ``acc_old``, ``acc_new``: the updated model's accuracy overall, on old-class
        and on new-class samples; ``old_acc``: the old model's accuracy on old-class samples.
    """
    n_old = old_logits.shape[-1]
    is_old = y < n_old
    old_ok = old_logits.argmax(-1) == y
    new_ok = new_logits.argmax(-1) == y
    n_old_rows = int(is_old.sum())
    if n_old_rows == 0:
        raise ReprolabError("flip_metrics: the test split has no samples of the old classes")
    flips = int((old_ok & ~new_ok & is_old).sum())
    acc_new = float(new_ok[~is_old].float().mean()) if bool((~is_old).any()) else float("nan")
    return {
        "nfr": flips / n_old_rows,
        "negative_flips": float(flips),
        "acc": float(new_ok.float().mean()),
        "acc_old": float(new_ok[is_old].float().mean()),
        "acc_new": acc_new,
        "old_acc": float(old_ok[is_old].float().mean()),
    }


class FlipReportParams(BaseModel):
    """Params of the negative-flip report.

    Attributes:
        acc_tolerance_pts: "high overall accuracy" = the updated model's accuracy is at most
            this many points below the independently retrained model (CI lower bound).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    acc_tolerance_pts: float = Field(default=2.0, ge=0.0)


def evaluate_flips(params: dict, *, old_weights: dict, test: pa.Table, **arm_weights: dict) -> dict[str, object]:
    """Negative-flip metrics of every arm's updated models against the old model, per seed.

    ``params`` = ``{"distill": DistillSetup, "old": TrainParams}``; ``arm_weights`` are
    keyword inputs ``weights_<arm>`` (packed per seed); student seed s is compared with
    old-model seed s. With >= 2 seeds each arm also gets ``multiplicity``: how much its test
    decisions move between seeds (:func:`tasks.multiplicity.metrics.seed_multiplicity`).
    """

    setup, old_spec = params["distill"], params["old"].model
    old = unpack_seeds(old_weights)
    x, y, _ = table_to_tensors(test)
    d = num_features(test)
    out: dict[str, object] = {}
    for key, packed in arm_weights.items():
        arm = key.removeprefix("weights_")
        per_seed, decisions = {}, []
        for seed, sd in unpack_seeds(packed).items():
            if seed not in old:
                raise ReprolabError(f"old model has seeds {sorted(old)}, arm {arm!r} needs seed {seed}")
            old_model = load_model(old_spec, old[seed], d, head_classes(old[seed], "old_weights"), "old_weights")
            spec = setup.student if "aux_head.weight" not in sd else setup.student.model_copy(update={"arch": "mlp_dual_head"})
            new_model = load_model(spec, sd, d, head_classes(sd, key), key)
            old_logits, _, _ = predict_logits(old_model, test)
            new_logits, _, _ = predict_logits(new_model, test)
            per_seed[str(seed)] = flip_metrics(old_logits, new_logits, y)
            decisions.append(new_logits.argmax(-1).numpy())
        out[arm] = {"seeds": per_seed}
        if len(decisions) >= 2:
            out[arm]["multiplicity"] = seed_multiplicity(decisions)
    return {"metrics": out}


def seed_multiplicity_section(flips: dict, nfr: dict[str, dict[int, float]]) -> tuple[pa.Table | None, str]:
    """Each arm's seed-to-seed multiplicity next to its mean NFR, and a sentence that sets
    MPT's NFR gain over independent retraining against the retrained arm's seed-to-seed churn.

    Returns ``(None, "")`` when the flips metrics carry no multiplicity (a single seed).
    """
    rows = [{"arm": a, "seeds": int(m["multiplicity"]["n_models"]),
             "nfr_mean": sum(nfr[a].values()) / len(nfr[a]),
             **{k: m["multiplicity"][k] for k in SEED_METRICS}}
            for a, m in flips.items() if "multiplicity" in m]
    if not rows:
        return None, ""
    by = {r["arm"]: r for r in rows}
    note = ""
    if {"mpt", "ce"} <= set(by):
        gain = (by["ce"]["nfr_mean"] - by["mpt"]["nfr_mean"]) * 100
        churn = by["ce"]["churn"] * 100
        note = (f"Seed-to-seed multiplicity: MPT lowers the mean NFR by {gain:.2f} pts vs independent retraining, "
                f"whose own seeds change {churn:.2f} pts of test decisions between two runs (MPT's seeds: "
                f"{by['mpt']['churn'] * 100:.2f} pts); the gain is {'larger' if gain > churn else 'not larger'} "
                "than the retrained arm's seed-to-seed churn.")
    return pa.Table.from_pylist(rows), note


def report(params: FlipReportParams, *, flips: dict) -> dict[str, object]:
    """Report of the negative-flip pipeline (arms: ce, focal_kd_old, mpt_nobias, mpt)."""

    nfr = {arm: per_seed(m, "nfr") for arm, m in flips.items()}
    acc = {arm: per_seed(m, "acc") for arm, m in flips.items()}
    labels = {
        "ce": "independent retraining (CE on all classes)",
        "focal_kd_old": "single-source focal distillation from the old model (PCT)",
        "mpt_nobias": "double-source focal distillation, no margin calibration",
        "mpt": "MPT: margin-calibrated CE + double-source focal distillation",
    }
    claims = []
    for base, what in (("ce", "independent retraining"), ("focal_kd_old", "single-source focal distillation")):
        c = paired(nfr["mpt"], nfr[base])
        claims.append(
            Claim(
                f"MPT reduces the negative-flip rate compared with {what}",
                f"NFR mpt - {base}: {describe(c)} (negative = fewer flips)",
                verdict(c, "<"),
                "paired CI of the NFR difference must lie below 0",
            )
        )
    c = paired(acc["mpt"], acc["ce"])
    tol = params.acc_tolerance_pts / 100
    claims.append(
        Claim(
            "MPT keeps high overall accuracy (close to the independently trained new model)",
            f"acc mpt - ce: {describe(c)}",
            verdict(c, ">", -tol),
            f"CI lower bound of the accuracy difference must be above -{params.acc_tolerance_pts:g} pts",
        )
    )
    c = paired(nfr["mpt"], nfr["mpt_nobias"])
    claims.append(
        Claim(
            "the margin-calibration term itself lowers negative flips (ablation)",
            f"NFR mpt - mpt_nobias: {describe(c)}",
            verdict(c, "<"),
            "paired CI of the NFR difference must lie below 0",
        )
    )
    nfr_table = arm_table(nfr, labels)
    acc_table = arm_table(acc, labels)
    acc_old = arm_table({a: per_seed(m, "acc_old") for a, m in flips.items()}, labels)
    acc_new = arm_table({a: per_seed(m, "acc_new") for a, m in flips.items()}, labels)
    cmp = comparison_table(
        {
            "nfr: mpt - ce": (nfr["mpt"], nfr["ce"]),
            "nfr: mpt - focal_kd_old": (nfr["mpt"], nfr["focal_kd_old"]),
            "nfr: mpt - mpt_nobias": (nfr["mpt"], nfr["mpt_nobias"]),
            "nfr: focal_kd_old - ce": (nfr["focal_kd_old"], nfr["ce"]),
            "acc: mpt - ce": (acc["mpt"], acc["ce"]),
        }
    )
    n = len(nfr["mpt"])
    mult, mult_note = seed_multiplicity_section(flips, nfr)
    rep = Report(
        title="Mitigating Negative Flips via Margin Preserving Training",
        paper="negative_flips",
        arxiv="2511.08322",
        summary=(
            "An old MLP is trained on the first classes only; updated MLPs on all classes are trained by "
            f"independent retraining, single-source focal distillation (PCT), and MPT with and without its "
            f"margin term ({n} seeds per arm, same budget). Negative-flip rate (NFR) = test samples of the "
            "old classes that the old model gets right and the updated model gets wrong, over all old-class "
            "test samples."
        ),
        claims=claims,
        tables={
            "Negative-flip rate per arm (fraction, 95% bootstrap CI)": nfr_table,
            "Overall test accuracy per arm": acc_table,
            "Accuracy on old classes": acc_old,
            "Accuracy on new classes": acc_new,
            "Paired differences": cmp,
            **({"Seed-to-seed multiplicity per arm (test decisions; churn = mean share of test samples two seeds "
                "of the arm decide differently, discrepancy = the largest such share, ambiguity = share of samples "
                "on which the seeds are not unanimous)": mult} if mult is not None else {}),
        },
        notes=[
            "The paper reports CIFAR-100 (50 -> 100 classes) and ImageNet-1K with ResNets; the abstract gives "
            "no numbers. We use a small 1-D signal dataset with MLPs.",
            "Assumption: the authors' MPT_KL defaults (logit bias b = 4 on new classes in the training CE, "
            "focal weights alpha = 1, beta = 5, tau = 5); the new-source model is an independently trained "
            "new model with other seeds than the updated models.",
            *([mult_note] if mult_note else []),
        ],
    )
    metrics = {f"{a}.nfr_mean": float(sum(v.values()) / len(v)) for a, v in nfr.items()}
    metrics.update({f"{a}.acc_mean": float(sum(v.values()) / len(v)) for a, v in acc.items()})
    if mult is not None:
        metrics.update({f"{r['arm']}.seed_churn": r["churn"] for r in mult.to_pylist()})
    metrics["verdicts"] = {cl.claim[:60]: cl.verdict for cl in claims}
    return {**report_outputs(rep), "summary": nfr_table, "metrics": metrics}
