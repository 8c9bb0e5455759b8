"""Logit Standardization in Knowledge Distillation (Sun et al., CVPR 2024, arXiv 2403.01427;
seed 004, catalogue: ../shared/papers/seed_catalog_A.md, candidate 6).

Claim (abstract): a Z-score pre-process of teacher and student logits before the
temperature softmax and KL "can improve the performance of existing logit-based
distillation methods"; vanilla KD with it performs favourably.

Pipeline: prepare (mnist1d, extra noise) -> train_teacher (MLP 256-128, 5 seeds) ->
distill arms (CE alone, vanilla KD, KD at LS's temperature/weight without standardization,
KD + LS, DKD, DKD + LS; student MLP 32, paired by seed) -> report.

Reproduced if: KD + LS beats vanilla KD with the paired 95 % bootstrap CI of the per-seed
accuracy difference above 0 (and likewise DKD + LS over DKD). Losses: tasks/distill/losses/kd.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from tasks.distill.arms import KDPaperParams
from tasks.distill.tuning import kd_stages
from tasks.papers.logit_standardization import report_logit_standardization
from tasks.platform.stage import Paper, register_paper

ARMS = ("ce", "kd", "kd_t2w9", "kd_ls", "dkd", "dkd_ls")


class LogitStandardizationParams(KDPaperParams):
    """The ``logit_standardization`` section of params.yaml."""

    ARMS: ClassVar[tuple[str, ...]] = ARMS


PAPER = register_paper(
    Paper(
        name="logit_standardization",
        title="Logit Standardization in Knowledge Distillation",
        arxiv="2403.01427",
        params_model=LogitStandardizationParams,
        module=str(Path(__file__).resolve()),
        claims=(
            "Z-score logit standardization improves vanilla KD",
            "the pre-process also improves other logit-based KD (DKD)",
        ),
        stages=kd_stages(ARMS, report_logit_standardization),
    )
)
