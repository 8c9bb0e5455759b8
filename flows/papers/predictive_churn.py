"""Predictive Churn with the Set of Good Models (seed 003_49ae51092b0cdefc.txt #50; catalogue C;
notes in ../shared/research/round2_candidates.md §3.2).

Claims (abstract): "traditional measures of predictive multiplicity can be used to examine
expected churn over this set of prospective models"; the Rashomon set helps "anticipate,
reduce, and avoid churn"; "useful even for models enhanced with uncertainty awareness".

Pipeline, per dataset (digits, mnist1d, breast cancer): prepare -> churn (deployed MLP, its
dropout epsilon set on the reference split, real retrained updates) -> report.

Reproduced if: the pre-update disagreement score predicts flipped points (AUROC CI > 0.5);
>= 80% of updates' churn lies in the set's 5-95% range; picking the update within its own
epsilon set cuts churn (CI < 0) at accuracy within 0.5 pts; abstaining on ambiguous points
lowers churn (CI < 0). Computation: tasks/papers/predictive_churn.py.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tasks.multiplicity.common import MultiData, prepare_stage, split_inputs
from tasks.papers import predictive_churn as pc
from tasks.platform.stage import Paper, Stage, register_paper


class PredictiveChurnParams(BaseModel):
    """The ``predictive_churn`` section of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: MultiData = MultiData()
    churn: pc.ChurnParams = pc.ChurnParams()
    report: pc.ChurnReportParams = pc.ChurnReportParams()


PAPER = register_paper(
    Paper(
        name="predictive_churn",
        title="Predictive Churn with the Set of Good Models",
        arxiv="",
        params_model=PredictiveChurnParams,
        module=str(Path(__file__).resolve()),
        claims=(
            "multiplicity over the Rashomon set anticipates churn of model updates",
            "the Rashomon set helps reduce churn",
            "useful with uncertainty-aware models",
        ),
        stages=(
            *(prepare_stage(ds) for ds in pc.DATASETS),
            *(Stage(f"churn_{ds}", pc.churn, params=("churn", f"data.{ds}"), inputs=split_inputs(ds),
                    outputs={"churn": "churn.parquet", "metrics": "metrics.json"}) for ds in pc.DATASETS),
            Stage("report", pc.report, params=("report",),
                  inputs={f"churn_{ds}": f"churn_{ds}.churn" for ds in pc.DATASETS},
                  outputs={"report": "report.md", "claims": "claims.json", "summary": "summary.parquet",
                           "metrics": "metrics.json"}),
        ),
    )
)
