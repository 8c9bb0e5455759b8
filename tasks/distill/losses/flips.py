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

import torch
from torch.nn import functional as F

from tasks.distill.losses.registry import register_loss
from tasks.platform.errors import ReprolabError

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


# --------------------------------------------------------------------------------------------
# PLATFORM: the pipeline's evaluation and report cores
# --------------------------------------------------------------------------------------------
