"""PLD: A Choice-Theoretic List-Wise Knowledge Distillation (Bassam, Zhu, Bian 2025,
arXiv 2506.12542; seed 004, catalogue: ../shared/papers/seed_catalog_A.md, candidate 7).

Claim (abstract): Plackett-Luce Distillation (teacher-optimal ranking, confidence-weighted
list-wise loss, replacing CE + KD) improves Top-1 over KD (+1.04 pts homogeneous) and DIST.

Pipeline: prepare (mnist1d, extra noise) -> train_teacher -> distill arms (CE alone,
CE + KD, PLD) -> report. Reproduced if: PLD beats CE + KD with the paired 95 % bootstrap
CI above 0. Loss: tasks/distill/losses/kd.py::pld.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from tasks.distill.arms import KDPaperParams
from tasks.distill.tuning import kd_stages
from tasks.papers.pld import report_pld
from tasks.platform.stage import Paper, register_paper

ARMS = ("ce", "kd", "pld")


class PLDParams(KDPaperParams):
    """The ``pld`` section of params.yaml."""

    ARMS: ClassVar[tuple[str, ...]] = ARMS


PAPER = register_paper(
    Paper(
        name="pld",
        title="PLD: A Choice-Theoretic List-Wise Knowledge Distillation",
        arxiv="2506.12542",
        params_model=PLDParams,
        module=str(Path(__file__).resolve()),
        claims=("PLD improves Top-1 over KD", "PLD improves over DIST"),
        stages=kd_stages(ARMS, report_pld),
    )
)
