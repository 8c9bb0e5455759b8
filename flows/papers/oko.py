"""Set Learning for Accurate and Calibrated Models (OKO; seed 003_49ae51092b0cdefc.txt #7;
catalogue C; notes in ../shared/research/round2_candidates.md §3.3).

Claims (abstract): OKO "achieves both better accuracy and calibration, especially in limited
training data and class-imbalanced regimes"; it "often yields better calibration even when
training with hard labels and dropping any additional calibration parameter tuning, such as
temperature scaling"; a trained model "can be applied to single examples at inference time,
without significant run-time overhead or architecture changes".

Pipeline, per dataset (digits, mnist1d): prepare -> cells (balanced few-shot and long-tailed
subsets x seeds x arms CE / CE+LS / CE+TS / OKO hard / OKO soft) -> report.
Method: tasks/multiplicity/oko.py; computation: tasks/papers/oko.py.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tasks.data_prep import DataParams
from tasks.multiplicity.common import prepare_stage, split_inputs
from tasks.papers import oko as po
from tasks.platform.stage import Paper, Stage, register_paper


class OKOData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    digits: DataParams = DataParams(dataset="digits")
    mnist1d: DataParams = DataParams(dataset="mnist1d", num_samples=3000)


class OKOPaperParams(BaseModel):
    """The ``oko`` section of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: OKOData = OKOData()
    oko: po.OKOParams = po.OKOParams()


PAPER = register_paper(
    Paper(
        name="oko",
        title="Set Learning for Accurate and Calibrated Models",
        arxiv="",
        params_model=OKOPaperParams,
        module=str(Path(__file__).resolve()),
        claims=(
            "OKO improves accuracy and calibration with limited or imbalanced data",
            "OKO calibrates without temperature scaling",
            "no inference overhead or architecture change",
        ),
        stages=(
            *(prepare_stage(ds) for ds in po.DATASETS),
            *(Stage(f"cells_{ds}", po.run_cells, params=("oko", f"data.{ds}"), inputs=split_inputs(ds),
                    outputs={"cells": "cells.parquet", "metrics": "metrics.json"}) for ds in po.DATASETS),
            Stage("report", po.report, inputs={f"cells_{ds}": f"cells_{ds}.cells" for ds in po.DATASETS},
                  outputs={"report": "report.md", "claims": "claims.json", "summary": "summary.parquet",
                           "metrics": "metrics.json"}),
        ),
    )
)
