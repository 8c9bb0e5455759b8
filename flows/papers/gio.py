"""GIO: Gradient Information Optimization for Training Dataset Selection (Everaert & Potts 2023;
arXiv 2306.11670; seed 002_e77702a5ff075a7b.txt #199; notes in
../shared/research/round2_candidates.md §1.4).

Claims (abstract): GIO needs "only a small set of (unlabeled) examples representing a target
distribution"; it "delivers outstanding results with very small train sets"; the findings are
"robust to different representation models and hyperparameters for GIO itself".

Pipeline: prepare (digits) -> select (per seed: a source pool of train images + constructed
distractors, a clean unlabelled target set from val; GIO, random at equal size, the full pool;
logistic regression scored on the clean test split) -> report.

Reproduced if: GIO - random > 0 (paired 95% CI over seeds); GIO within 1 pt of the full pool
or above, with at most 20% of it; GIO keeps fewer distractors than their pool share; GIO beats
random at every other k. Selector: tasks/data_selection/gio.py; computation: tasks/papers/gio.py.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tasks.data_prep import SPLITS, DataParams, prepare, split_schema_check


OUT_SPLITS = {s: f"{s}.parquet" for s in SPLITS}
from tasks.papers import gio
from tasks.platform.stage import Paper, Stage, register_paper


class GIOParams(BaseModel):
    """The ``gio`` section of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: DataParams = DataParams(dataset="digits", val_fraction=0.25, test_fraction=0.25)
    select: gio.SelectParams = gio.SelectParams()


PAPER = register_paper(
    Paper(
        name="gio",
        title="GIO: Gradient Information Optimization for Training Dataset Selection",
        arxiv="2306.11670",
        params_model=GIOParams,
        module=str(Path(__file__).resolve()),
        claims=(
            "GIO's subset beats a random subset of the same size",
            "GIO approaches full-data performance with far less data",
            "robust to GIO's hyperparameters",
        ),
        stages=(
            Stage("prepare", prepare, params=("data",), outputs=OUT_SPLITS,
                  schemas={k: split_schema_check for k in SPLITS}),
            Stage("select", gio.select_and_train, params=("select",),
                  inputs={s: f"prepare.{s}" for s in SPLITS},
                  outputs={"results": "results.parquet", "selections": "selections.parquet",
                           "metrics": "metrics.json"}),
            Stage("report", gio.report, params=("select",), inputs={"results": "select.results"},
                  outputs={"report": "report.md", "claims": "claims.json", "summary": "summary.parquet",
                           "metrics": "metrics.json"}),
        ),
    )
)
