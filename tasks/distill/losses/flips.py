"""Margin Preserving Training (MPT) against negative flips in model updates.

Ricci, Biondi, Pernici, Del Bimbo (AAAI 2026), "Mitigating Negative Flips via Margin
Preserving Training", arXiv 2511.08322; code: miccunifi/negative_flip_MPT.

Setting: an *old* model was trained on the first ``C_old`` classes; the *updated* model is
trained on all ``C`` classes. A negative flip is a test sample the old model classified
correctly and the updated model gets wrong. MPT trains the updated model with

    L = CE(s + b * 1[new class], y)                                   (margin calibration)
      + FD(s[:, :C_old], z_old, y) + FD(s, z_new, y)                  (double-source focal KD)

where ``z_old`` are the old model's logits, ``z_new`` those of an independently trained new
model, and the focal distillation term (PCT, Yan et al. 2021) is

    FD(s, z, y) = mean_b (alpha + beta * 1[argmax z_b = y_b]) * KL(softmax(z_b/tau) || softmax(s_b/tau)).

Adding ``b > 0`` to the new classes' logits *inside the training loss only* makes the model
learn smaller raw logits for the new classes, i.e. a larger margin for the old ones at test
time (the bias is not applied at prediction).

Assumption: hyper-parameters follow the authors' ``MPT_KL`` defaults (b = 4, alpha = 1,
beta = 5, tau = 5, no tau^2 factor); the NFR denominator is the number of test samples of
the old classes (as in the authors' ``test()``, which masks ``targets < 50``).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.nn import functional as F

from tasks.errors import ReprolabError
from tasks.methods.kd import register_loss

# --------------------------------------------------------------------------------------------
# PAPER: the losses
# --------------------------------------------------------------------------------------------


def focal_kd(s: torch.Tensor, z: torch.Tensor, y: torch.Tensor, alpha: float, beta: float, tau: float):
    """Focal distillation (PCT): KL weighted up on samples the reference ``z`` gets right.

    s: (B, C') student logits restricted to the reference's classes; z: (B, C') reference
    logits; y: (B,) labels (a label >= C' never matches, so such samples get weight alpha).
    """
    weight = alpha + beta * (z.argmax(-1) == y).to(s.dtype)  # (B,)
    log_ps = F.log_softmax(s / tau, -1)
    log_pz = F.log_softmax(z / tau, -1)
    kl = (log_pz.exp() * (log_pz - log_ps)).sum(-1)  # (B,)
    return (weight * kl).mean()


def split_sources(student: torch.Tensor, teachers: list[torch.Tensor]):
    """Old reference = the teacher with fewer classes than the student; new = the one with all.

    Returns (old (B, C_old) or None, new (B, C) or None).
    """
    c = student.shape[-1]
    old = [t for t in teachers if t.shape[-1] < c]
    new = [t for t in teachers if t.shape[-1] == c]
    if len(old) > 1 or len(new) > 1 or len(old) + len(new) != len(teachers):
        shapes = [tuple(t.shape) for t in teachers]
        raise ReprolabError(
            f"margin-preserving losses take at most one old (C_old < {c}) and one new ({c}-class) "
            f"reference model; got teacher logits of shapes {shapes}"
        )
    return (old[0] if old else None), (new[0] if new else None)


def margin_calibrated_ce(s: torch.Tensor, y: torch.Tensor, n_old: int, bias: float) -> torch.Tensor:
    """CE on logits with ``+bias`` added to the new classes ``[n_old, C)`` (MPT's margin term)."""
    offset = torch.zeros(s.shape[-1], dtype=s.dtype)
    offset[n_old:] = bias
    return F.cross_entropy(s + offset, y)


@register_loss("focal_kd_old")
def focal_kd_old(student, y, teachers, *, alpha: float = 1.0, beta: float = 5.0, tau: float = 5.0):
    """Single-source baseline (PCT): CE + focal distillation from the old model only."""
    old, _ = split_sources(student, teachers)
    if old is None:
        raise ReprolabError("focal_kd_old needs the old model (fewer classes) as a teacher")
    return F.cross_entropy(student, y) + focal_kd(student[:, : old.shape[-1]], old, y, alpha, beta, tau)


@register_loss("mpt", min_teachers=2)
def mpt(
    student,
    y,
    teachers,
    *,
    bias: float = 4.0,
    alpha: float = 1.0,
    beta: float = 5.0,
    tau: float = 5.0,
    new_source: bool = True,
):
    """Margin Preserving Training: margin-calibrated CE + double-source focal distillation.

    ``bias = 0`` gives the "no margin calibration" ablation; ``new_source = False`` drops
    the independently trained new model (single source + margin).
    """
    old, new = split_sources(student, teachers)
    if old is None or (new_source and new is None):
        raise ReprolabError("mpt needs the old model and the independently trained new model as teachers")
    n_old = old.shape[-1]
    loss = margin_calibrated_ce(student, y, n_old, bias)
    loss = loss + focal_kd(student[:, :n_old], old, y, alpha, beta, tau)
    if new_source:
        loss = loss + focal_kd(student, new, y, alpha, beta, tau)
    return loss


# --------------------------------------------------------------------------------------------
# PLATFORM: old-class data and the metric
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# PLATFORM: the pipeline's evaluation and report cores
# --------------------------------------------------------------------------------------------


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
    old-model seed s.
    """
    from tasks.distill import head_classes, load_model
    from tasks.data_prep import num_features, table_to_tensors
    from tasks.train import predict_logits, unpack_seeds

    setup, old_spec = params["distill"], params["old"].model
    old = unpack_seeds(old_weights)
    x, y, _ = table_to_tensors(test)
    d = num_features(test)
    out: dict[str, object] = {}
    for key, packed in arm_weights.items():
        arm = key.removeprefix("weights_")
        per_seed = {}
        for seed, sd in unpack_seeds(packed).items():
            if seed not in old:
                raise ReprolabError(f"old model has seeds {sorted(old)}, arm {arm!r} needs seed {seed}")
            old_model = load_model(old_spec, old[seed], d, head_classes(old[seed], "old_weights"), "old_weights")
            spec = setup.student if "aux_head.weight" not in sd else setup.student.model_copy(update={"arch": "mlp_dual_head"})
            new_model = load_model(spec, sd, d, head_classes(sd, key), key)
            old_logits, _, _ = predict_logits(old_model, test)
            new_logits, _, _ = predict_logits(new_model, test)
            per_seed[str(seed)] = flip_metrics(old_logits, new_logits, y)
        out[arm] = {"seeds": per_seed}
    return {"metrics": out}


def report(params: FlipReportParams, *, flips: dict) -> dict[str, object]:
    """Report of the negative-flip pipeline (arms: ce, focal_kd_old, mpt_nobias, mpt)."""
    from tasks.distill_study import arm_table, comparison_table, describe, paired, per_seed
    from tasks.report import Claim, Report, report_outputs

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
                "reproduced" if c["hi"] < 0 else "not reproduced",
                "paired CI of the NFR difference must lie below 0",
            )
        )
    c = paired(acc["mpt"], acc["ce"])
    tol = params.acc_tolerance_pts / 100
    claims.append(
        Claim(
            "MPT keeps high overall accuracy (close to the independently trained new model)",
            f"acc mpt - ce: {describe(c)}",
            "reproduced" if c["lo"] > -tol else "not reproduced",
            f"CI lower bound of the accuracy difference must be above -{params.acc_tolerance_pts:g} pts",
        )
    )
    c = paired(nfr["mpt"], nfr["mpt_nobias"])
    claims.append(
        Claim(
            "the margin-calibration term itself lowers negative flips (ablation)",
            f"NFR mpt - mpt_nobias: {describe(c)}",
            "reproduced" if c["hi"] < 0 else "not reproduced",
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
        },
        notes=[
            "The paper reports CIFAR-100 (50 -> 100 classes) and ImageNet-1K with ResNets; the abstract gives "
            "no numbers. We use a small 1-D signal dataset with MLPs.",
            "Assumption: the authors' MPT_KL defaults (logit bias b = 4 on new classes in the training CE, "
            "focal weights alpha = 1, beta = 5, tau = 5); the new-source model is an independently trained "
            "new model with other seeds than the updated models.",
        ],
    )
    metrics = {f"{a}.nfr_mean": float(sum(v.values()) / len(v)) for a, v in nfr.items()}
    metrics.update({f"{a}.acc_mean": float(sum(v.values()) / len(v)) for a, v in acc.items()})
    metrics["verdicts"] = {cl.claim[:60]: cl.verdict for cl in claims}
    return {**report_outputs(rep), "summary": nfr_table, "metrics": metrics}
