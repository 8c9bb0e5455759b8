"""Dual-Head Knowledge Distillation: Enhancing Logits Utilization with an Auxiliary Head
(Yang et al. 2024, arXiv 2411.08937; seed 004, catalogue: ../shared/papers/seed_catalog_A.md,
candidate 8).

Claims (abstract): adding a logit-level loss to the probability-level KD loss on the same
linear head degrades the student below either loss alone (head collapse); splitting the
classifier into two heads, one per loss, fixes it and performs better.

Pipeline: prepare (mnist1d, extra noise) -> train_teacher -> distill arms (CE alone,
probability-level only, logit-level only, both on one head, dual-head) -> report.
Reproduced if: (a) both-on-one-head is below each single loss (paired CIs below 0);
(b) dual-head beats both-on-one-head and the best single loss (paired CIs above 0).
Losses: tasks/distill/losses/kd.py (binary_kl, kd_binary_kl, dual_head); model: mlp_dual_head.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from tasks.distill.arms import KDPaperParams
from tasks.distill.tuning import kd_stages
from tasks.papers.dual_head_kd import report_dual_head
from tasks.platform.stage import Paper, register_paper

ARMS = ("ce", "kd", "binary_kl", "kd_binary_kl", "dual_head")


class DualHeadKDParams(KDPaperParams):
    """The ``dual_head_kd`` section of params.yaml."""

    ARMS: ClassVar[tuple[str, ...]] = ARMS


PAPER = register_paper(
    Paper(
        name="dual_head_kd",
        title="Dual-Head Knowledge Distillation: Enhancing Logits Utilization with an Auxiliary Head",
        arxiv="2411.08937",
        params_model=DualHeadKDParams,
        module=str(Path(__file__).resolve()),
        claims=(
            "logit-level + probability-level loss on one head degrades below either alone",
            "dual-head KD beats both-on-one-head and the single losses",
        ),
        stages=kd_stages(ARMS, report_dual_head),
    )
)
