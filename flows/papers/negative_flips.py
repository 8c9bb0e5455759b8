"""Mitigating Negative Flips via Margin Preserving Training (Ricci et al., AAAI 2026,
arXiv 2511.08322; seed 004, catalogue: ../shared/papers/seed_catalog_A.md, candidate 9).

Claim (abstract): margin-calibrated training plus double-source focal distillation (old
model + an independently trained new model) "consistently reduces the negative flip rate
with high overall accuracy".

Pipeline: prepare (mnist1d) -> select_old (classes 0..n_old-1) -> train_old (old model)
and train_reference (independent new model, other seeds: the new source) -> distill arms
(independent retraining = CE, single-source focal KD, MPT without / with the margin term)
-> flips (NFR of every arm against the old model, per seed) -> report.

Reproduced if: MPT's NFR is below independent retraining's and single-source focal KD's
(paired 95 % bootstrap CIs below 0) with overall accuracy within ``report.acc_tolerance_pts``
of independent retraining. Method: tasks/distill/losses/flips.py (losses), tasks/papers/negative_flips.py (flips, report).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.data_prep import DataParams
from tasks.distill.arms import (
    REPORT_OUTPUTS,
    Arm,
    DistillSetup,
    arm_stage,
    check_paper,
    check_tuning,
    prepare_stage,
)
from tasks.distill.tuning import report_stages, student_floors, tuning_stages
from tasks.papers import negative_flips as nf
from tasks.platform.stage import Paper, Stage, register_paper
from tasks.platform.tuning import TuningParams
from tasks.train import TrainParams, train

ARMS = ("ce", "focal_kd_old", "mpt_nobias", "mpt")


class NegativeFlipsParams(BaseModel):
    """The ``negative_flips`` section of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: DataParams = DataParams(dataset="mnist1d")
    classes: nf.OldClassesParams = nf.OldClassesParams()
    old: TrainParams = TrainParams()
    reference: TrainParams = TrainParams()
    distill: DistillSetup = DistillSetup()
    arms: dict[str, Arm] = Field(default_factory=dict)
    report: nf.FlipReportParams = nf.FlipReportParams()
    tuning: TuningParams

    @model_validator(mode="after")
    def _consistent(self):
        check_paper(self.distill, self.arms, ARMS, (self.reference, "reference"), (self.old, "old"))
        check_tuning(self.distill, self.arms, self.tuning)
        return self


def flips_stage(name: str, suffix: str = "") -> Stage:
    """NFR of every arm (``distill_<arm><suffix>``) against the old model, per seed."""
    return Stage(name, nf.evaluate_flips, params=("distill", "old"),
                 inputs={"old_weights": "train_old.weights", "test": "prepare.test",
                         **{f"weights_{a}": f"distill_{a}{suffix}.weights" for a in ARMS}},
                 outputs={"metrics": "metrics.json"})


PAPER = register_paper(
    Paper(
        name="negative_flips",
        title="Mitigating Negative Flips via Margin Preserving Training",
        arxiv="2511.08322",
        params_model=NegativeFlipsParams,
        module=str(Path(__file__).resolve()),
        claims=("MPT reduces the negative-flip rate with high overall accuracy",),
        stages=(
            prepare_stage(),
            Stage("select_old", nf.select_old_classes, params=("classes",),
                  inputs={"train": "prepare.train", "val": "prepare.val"},
                  outputs={"train": "train.parquet", "val": "val.parquet"}),
            Stage("train_old", train, params=("old",), inputs={"train": "select_old.train", "val": "select_old.val"},
                  outputs={"weights": "weights.safetensors", "metrics": "metrics.json"}),
            Stage("train_reference", train, params=("reference",), inputs={"train": "prepare.train", "val": "prepare.val"},
                  outputs={"weights": "weights.safetensors", "metrics": "metrics.json"}),
            *(arm_stage(a, "train_reference.weights", "train_old.weights") for a in ARMS),
            flips_stage("flips"),
            # issue #17: every arm re-tuned on one budget, then the same flips + report
            *tuning_stages(ARMS, "train_reference.weights", "train_old.weights"),
            flips_stage("flips_tuned", "_tuned"),
            *report_stages(nf.report, ("report",), {"flips": "flips.metrics"}, {"flips": "flips_tuned.metrics"},
                           REPORT_OUTPUTS, ARMS, student_floors(ARMS)),
        ),
    )
)
