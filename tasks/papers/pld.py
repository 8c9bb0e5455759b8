"""pld: the report of PLD: list-wise knowledge distillation (Bassam et al. 2025).

The arms and the shared KD report helpers are :mod:`tasks.distill.arms` and
:mod:`tasks.distill.kd_report`; the losses are registered in :mod:`tasks.distill.losses`.
"""

from __future__ import annotations

from typing import Any

from tasks.distill.kd_report import setting, build, claim_better, collect, teacher_values
from tasks.platform.report import Claim


PLD_LABELS = {
    "teacher": "teacher alone",
    "ce": "student alone (CE)",
    "kd": "CE + KD (T=4, CE 0.1, KD 0.9)",
    "pld": "PLD (teacher-optimal ranking, confidence-weighted Plackett-Luce; no CE, no weight)",
}


def report_pld(params: Any, **arms: Any) -> dict[str, Any]:
    """Report of the PLD pipeline (arms: ce, kd, pld)."""
    vals = {"teacher": teacher_values(arms), **collect(arms)}
    claims = [
        claim_better(
            "PLD improves Top-1 over classical KD (paper: +1.04 pts homogeneous, +1.09 heterogeneous)",
            "pld",
            "kd",
            vals,
        ),
        claim_better(
            "PLD, which subsumes (weighted) cross-entropy, beats the student trained with CE alone",
            "pld",
            "ce",
            vals,
        ),
        Claim(
            "PLD improves over DIST (+0.42 pts homogeneous, +0.48 heterogeneous)",
            "DIST is not implemented in this pipeline",
            "not testable at this scale",
            "no DIST arm; only KD and CE baselines are run",
        ),
    ]
    return build(
        "PLD: A Choice-Theoretic List-Wise Knowledge Distillation",
        "pld",
        "2506.12542",
        f"Teacher MLP -> small student MLP; CE alone, CE + KD and PLD ({setting(vals)}). "
        "Homogeneous pair only (MLP -> MLP).",
        claims,
        vals,
        PLD_LABELS,
        {"pld - kd": ("pld", "kd"), "pld - ce": ("pld", "ce"), "kd - ce": ("kd", "ce")},
        [
            "The paper reports ImageNet-1K / CIFAR-100 gains with ResNet/ViT pairs; we use MLPs on a small "
            "1-D signal dataset, a single homogeneous pair, and Adam for a few dozen epochs.",
            "Assumption: PLD weights are the teacher's softmax probabilities (T = 1) of the class chosen at "
            "each step, un-normalised; the exact alpha_k of the paper was not verified "
            "(anchors_compression.md section 7.2).",
        ],
    )
