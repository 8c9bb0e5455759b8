"""dual_head_kd: the report of Dual-Head Knowledge Distillation (Yang et al. 2024).

The arms and the shared KD report helpers are :mod:`tasks.distill.arms` and
:mod:`tasks.distill.kd_report`; the losses are registered in :mod:`tasks.distill.losses`.
"""

from __future__ import annotations

from typing import Any

from tasks.distill.kd_report import setting, build, claim_better, collect, teacher_values
from tasks.evaluation.seeds import describe, paired
from tasks.platform.report import Claim


DH_LABELS = {
    "teacher": "teacher alone",
    "ce": "student alone (CE)",
    "kd": "probability-level only: CE + KD on the head",
    "binary_kl": "logit-level only: CE + BinaryKL on the head",
    "kd_binary_kl": "both losses on ONE head (the motivating failure)",
    "dual_head": "dual-head KD: CE + KD on the main head, BinaryKL on an auxiliary head",
}


def report_dual_head(params: Any, **arms: Any) -> dict[str, Any]:
    """Report of the dual-head KD pipeline (arms: ce, kd, binary_kl, kd_binary_kl, dual_head)."""
    vals = {"teacher": teacher_values(arms), **collect(arms)}
    both_vs_prob = paired(vals["kd_binary_kl"], vals["kd"])
    both_vs_logit = paired(vals["kd_binary_kl"], vals["binary_kl"])
    degenerates = both_vs_prob["hi"] < 0 and both_vs_logit["hi"] < 0
    best_single = max(("kd", "binary_kl"), key=lambda a: sum(vals[a].values()))
    claims = [
        Claim(
            "combining the logit-level and probability-level losses on one head degrades the student below "
            "either loss alone",
            f"both - prob-only: {describe(both_vs_prob)}; both - logit-only: {describe(both_vs_logit)}",
            "reproduced" if degenerates else "not reproduced",
            "both paired CIs must lie below 0",
        ),
        claim_better(
            "dual-head KD beats putting both losses on one head",
            "dual_head",
            "kd_binary_kl",
            vals,
        ),
        claim_better(
            f"dual-head KD beats the best single-loss student (here: {best_single})",
            "dual_head",
            best_single,
            vals,
        ),
    ]
    return build(
        "Dual-Head Knowledge Distillation: Enhancing Logits Utilization with an Auxiliary Head",
        "dual_head_kd",
        "2411.08937",
        f"Teacher MLP -> small student MLP; the four loss placements of the paper plus CE alone ({setting(vals)}).",
        claims,
        vals,
        DH_LABELS,
        {
            "both - kd": ("kd_binary_kl", "kd"),
            "both - binary_kl": ("kd_binary_kl", "binary_kl"),
            "dual_head - both": ("dual_head", "kd_binary_kl"),
            "dual_head - kd": ("dual_head", "kd"),
            "dual_head - binary_kl": ("dual_head", "binary_kl"),
        },
        [
            "The paper reports CIFAR-100 / ImageNet results with CNN students (no numbers in the abstract); "
            "we use MLP students whose 'linear classifier' is the last layer.",
            "Assumption: the logit-level loss is the authors' BinaryKL (per-class Bernoulli KL of sigmoids, "
            "T = 2); the main head keeps CE + Hinton KL; predictions use the main head.",
        ],
    )
