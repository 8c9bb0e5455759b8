"""Logit-based knowledge-distillation losses, registered by name.

Every loss is a small pure function

    loss(student, y, teachers, **params) -> scalar Tensor

where ``student`` is the student's logits ``(B, C)`` float32 (or, for a two-head student, a
tuple ``(main (B, C), aux (B, C))``), ``y`` the labels ``(B,)`` int64 and ``teachers`` a list of
teacher logits, each ``(B, C_t)`` float32, computed without gradient. ``params`` are the
loss's keyword arguments; ``params.yaml`` sets them and :func:`check_loss_params` validates the
names against the function signature before any work starts.

Papers:
    * Hinton, Vinyals, Dean (2015), "Distilling the Knowledge in a Neural Network" (vanilla KD).
    * Sun et al. (CVPR 2024), "Logit Standardization in Knowledge Distillation" (arXiv 2403.01427).
    * Zhao et al. (CVPR 2022), "Decoupled Knowledge Distillation" (DKD; here as the second
      logit-based KD variant the standardization paper plugs into).
    * Bassam, Zhu, Bian (2025), "PLD: A Choice-Theoretic List-Wise Knowledge Distillation"
      (arXiv 2506.12542).
    * Yang et al. (2024), "Dual-Head Knowledge Distillation: Enhancing Logits Utilization with an
      Auxiliary Head" (arXiv 2411.08937).
The negative-flip (margin preserving) and graph-on-logits (InfiGFusion) losses live in
``flips.py`` and ``gld.py`` next to this file and register in the same registry.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from tasks.distill.losses.registry import register_loss

# --------------------------------------------------------------------------------------------
# PAPER: building blocks
# --------------------------------------------------------------------------------------------


def logit_standardize(z: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Z-score each row of ``z`` (B, C): ``(z - mean) / (eps + std)``.

    Sun et al. 2024, Eq. (9)/Algorithm 1: applied to teacher and student logits *separately*
    before the temperature softmax. ``std`` is torch's default unbiased estimator, as in the
    authors' code (sunshangquan/logit-standardization-KD) and torchdistill's LogitStdKDLoss.
    """
    mean = z.mean(dim=-1, keepdim=True)
    std = z.std(dim=-1, keepdim=True)
    return (z - mean) / (eps + std)


def kl_soft(zs: torch.Tensor, zt: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton KD term: ``T^2 * mean_b KL(softmax(zt/T) || softmax(zs/T))`` (scalar).

    zs, zt: (B, C) float32 logits. The T^2 keeps gradient magnitudes comparable across T
    (Hinton et al. 2015, Sec. 2).
    """
    log_ps = F.log_softmax(zs / temperature, dim=-1)  # (B, C)
    log_pt = F.log_softmax(zt / temperature, dim=-1)  # (B, C)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(-1)  # (B,)
    return kl.mean() * temperature**2


def _maybe_standardize(zs: torch.Tensor, zt: torch.Tensor, standardize: bool):
    return (logit_standardize(zs), logit_standardize(zt)) if standardize else (zs, zt)


def binary_kl(zs: torch.Tensor, zt: torch.Tensor, temperature: float) -> torch.Tensor:
    """Logit-level loss of Dual-Head KD: per-class Bernoulli KL between sigmoids (scalar).

    ``T^2 / B * sum_{b,c} KL(Bern(sigmoid(zt/T)) || Bern(sigmoid(zs/T)))``. Each class's
    logit is read as an independent binary decision, so the loss sees the logits' absolute
    values, which the softmax discards (Yang et al. 2024, Sec. 3; the authors' BinaryKL).
    """
    pt = torch.sigmoid(zt / temperature)  # (B, C)
    log_ps1, log_ps0 = F.logsigmoid(zs / temperature), F.logsigmoid(-zs / temperature)
    log_pt1, log_pt0 = F.logsigmoid(zt / temperature), F.logsigmoid(-zt / temperature)
    kl = pt * (log_pt1 - log_ps1) + (1 - pt) * (log_pt0 - log_ps0)  # (B, C)
    return kl.sum() / zs.shape[0] * temperature**2


def mean_teacher(teachers: list[torch.Tensor]) -> torch.Tensor:
    """Logit-average of several teachers (B, C); one teacher is returned as is."""
    return teachers[0] if len(teachers) == 1 else torch.stack(teachers).mean(0)


# --------------------------------------------------------------------------------------------
# PAPER: the losses
# --------------------------------------------------------------------------------------------


@register_loss("ce", min_teachers=0)
def ce(student, y, teachers) -> torch.Tensor:
    """Plain cross-entropy (the "student alone" / independent-retraining baseline)."""
    return F.cross_entropy(student, y)


@register_loss("kd")
def kd(
    student,
    y,
    teachers,
    *,
    temperature: float = 4.0,
    ce_weight: float = 0.1,
    kd_weight: float = 0.9,
    standardize: bool = False,
) -> torch.Tensor:
    """Vanilla KD (Hinton 2015, Eq. 2): ``ce_weight * CE(zs, y) + kd_weight * T^2 KL``.

    With ``standardize=True`` this is KD with the logit-standardization pre-process (Sun et
    al. 2024, Algorithm 1): both logits are z-scored *before* ``/T`` inside the KL; the CE
    term keeps the raw student logits. Defaults are mdistiller's KD settings (T = 4, CE 0.1,
    KD 0.9); the standardization paper uses base temperature 2 and KD weight 9.

    Teachers are logit-averaged if there are several.
    """
    zt = mean_teacher(teachers)
    zs_kd, zt_kd = _maybe_standardize(student, zt, standardize)
    return ce_weight * F.cross_entropy(student, y) + kd_weight * kl_soft(zs_kd, zt_kd, temperature)


@register_loss("dkd")
def dkd(
    student,
    y,
    teachers,
    *,
    temperature: float = 4.0,
    ce_weight: float = 1.0,
    alpha: float = 1.0,
    beta: float = 8.0,
    standardize: bool = False,
) -> torch.Tensor:
    """Decoupled KD (Zhao et al. 2022, Eq. 7): ``CE + T^2 (alpha TCKD + beta NCKD)``.

    TCKD = KL between the binary (target, rest) distributions of teacher and student;
    NCKD = KL between the distributions over the non-target classes only (target removed).
    ``standardize`` applies the logit-standardization pre-process to both inputs of the KD
    part (Sun et al. 2024, Table 1's "DKD + ours").

    Assumption: DKD's 20-epoch linear warm-up of the KD part is left out (our runs are a few
    dozen epochs at most; every arm gets the same budget).
    """
    zt = mean_teacher(teachers)
    zs, zt = _maybe_standardize(student, zt, standardize)
    onehot = F.one_hot(y, zs.shape[-1]).bool()  # (B, C)
    ps, pt = F.softmax(zs / temperature, -1), F.softmax(zt / temperature, -1)
    # TCKD: binary (target, non-target) distributions, shape (B, 2).
    bs = torch.stack([ps[onehot], 1 - ps[onehot]], -1).clamp_min(1e-12)
    bt = torch.stack([pt[onehot], 1 - pt[onehot]], -1).clamp_min(1e-12)
    tckd = (bt * (bt.log() - bs.log())).sum(-1).mean()
    # NCKD: softmax over the non-target classes (target logit pushed to -inf via a large offset).
    big = 1000.0
    log_qs = F.log_softmax(zs / temperature - big * onehot, -1)
    log_qt = F.log_softmax(zt / temperature - big * onehot, -1)
    nckd = (log_qt.exp() * (log_qt - log_qs)).sum(-1).mean()
    return ce_weight * F.cross_entropy(student, y) + temperature**2 * (alpha * tckd + beta * nckd)


def teacher_optimal_permutation(zt: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PLD's teacher-optimal ranking (B, C) int64: true label first, then the other classes
    by descending teacher logit (Bassam et al. 2025, Sec. 3.2).
    """
    key = zt.clone()
    key.scatter_(1, y[:, None], float("inf"))  # the true label sorts first
    return key.argsort(dim=1, descending=True, stable=True)


@register_loss("pld")
def pld(student, y, teachers, *, temperature: float = 1.0) -> torch.Tensor:
    """Plackett-Luce Distillation (Bassam et al. 2025, the PLD objective).

    With the teacher-optimal permutation ``pi`` (true label first, then classes by teacher
    confidence) and teacher confidences ``w = softmax(zt / T)``::

        L = mean_b sum_k w[pi_k] * ( logsumexp_{j >= k} s[pi_j] - s[pi_k] )

    i.e. the negative log-likelihood of each choice step of the Plackett-Luce model on the
    student logits ``s``, weighted by the teacher's confidence in the class chosen at that
    step. It replaces CE + KD (no separate CE term, no mixing weight). Step k = 1 is
    ``w[y] * CE(s, y)``, so the loss contains a weighted CE.

    Assumption: the weights are the teacher softmax at temperature ``T`` (default 1), used
    un-normalised (they already sum to 1 over the list). We read the summaries of the paper
    (anchors_compression.md section 7.2 marks the exact alpha_k as unverified); this is the
    reading the abstract states: "weighting each ranked choice by its own confidence".
    """
    zt = mean_teacher(teachers)
    perm = teacher_optimal_permutation(zt, y)  # (B, C)
    s = student.gather(1, perm)  # (B, C) student logits in ranked order
    w = F.softmax(zt / temperature, -1).gather(1, perm)  # (B, C) teacher confidence per step
    # logsumexp over the suffix j >= k: reverse, cumulative logsumexp, reverse back.
    suffix_lse = torch.logcumsumexp(s.flip(1), dim=1).flip(1)  # (B, C)
    return (w * (suffix_lse - s)).sum(1).mean()


@register_loss("binary_kl")
def ce_binary_kl(
    student, y, teachers, *, temperature: float = 2.0, ce_weight: float = 1.0, kd_weight: float = 1.0
) -> torch.Tensor:
    """Logit-level KD alone on one head: ``CE + kd_weight * BinaryKL`` (Dual-Head KD's
    "logit-level loss in isolation" arm)."""
    zt = mean_teacher(teachers)
    return ce_weight * F.cross_entropy(student, y) + kd_weight * binary_kl(student, zt, temperature)


@register_loss("kd_binary_kl")
def kd_binary_kl(
    student,
    y,
    teachers,
    *,
    temperature: float = 4.0,
    logit_temperature: float = 2.0,
    ce_weight: float = 0.1,
    kd_weight: float = 0.9,
    logit_weight: float = 1.0,
) -> torch.Tensor:
    """Both losses on ONE head: ``CE + KL (probability level) + BinaryKL (logit level)``.

    Dual-Head KD's motivating failure (Yang et al. 2024, Sec. 3): on a single linear head
    the two losses' gradients conflict and the head collapses.
    """
    # NOTE: the same objective as dual-head KD with both "heads" being the one head.
    return dual_head(
        (student, student), y, teachers, temperature=temperature, logit_temperature=logit_temperature,
        ce_weight=ce_weight, kd_weight=kd_weight, logit_weight=logit_weight,
    )


@register_loss("dual_head", heads=2)
def dual_head(
    student,
    y,
    teachers,
    *,
    temperature: float = 4.0,
    logit_temperature: float = 2.0,
    ce_weight: float = 0.1,
    kd_weight: float = 0.9,
    logit_weight: float = 1.0,
) -> torch.Tensor:
    """Dual-Head KD (Yang et al. 2024, Sec. 4): the same two losses on two heads.

    ``student = (main, aux)``, two linear heads on one backbone. The main head gets the
    probability-level loss (CE + T^2 KL), the auxiliary head the logit-level BinaryKL; the
    backbone gets both gradients. Predictions use the main head.

    Assumption: the authors' code puts CE on the main head and BinaryKL on the auxiliary
    head; we also keep Hinton's KL on the main head so that "dual-head" differs from
    "single-head both" (:func:`kd_binary_kl`) only in where BinaryKL lands.
    """
    main, aux = student
    zt = mean_teacher(teachers)
    prob_level = kd(main, y, [zt], temperature=temperature, ce_weight=ce_weight, kd_weight=kd_weight)
    return prob_level + logit_weight * binary_kl(aux, zt, logit_temperature)
