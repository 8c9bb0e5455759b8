"""Dropout-Based Rashomon Set Exploration for Efficient Predictive Multiplicity Estimation
(Hsu et al., ICLR 2024; seed 003_49ae51092b0cdefc.txt #53; catalogue C; notes in
../shared/research/round2_candidates.md §3.1).

Claims (abstract): dropout parameters connect to properties of the Rashomon set; dropout
"consistently outperforms baselines in terms of the effectiveness of predictive multiplicity
metric estimation, with runtime speedup up to 20x ~ 5000x"; mitigation "through dropout
ensemble and model selection".

Pipeline, per dataset (digits, mnist1d, breast cancer): prepare -> explore (base MLPs x
seeds; retrain / Bernoulli / Gaussian dropout / AWP candidates; epsilon sets on the
reference split; six metrics and seconds per epsilon-valid model) -> report.

Reproduced if: seconds per epsilon-valid model, retraining / dropout, has a 95% CI lower
bound >= 20x on every dataset; dropout's ambiguity/discrepancy/VPR exceed retraining's at
matched epsilon (paired CI > 0); loss increase and in-set share are monotone in the rate;
dropout ensembles disagree less across seeds at accuracy within 0.5 pts.
Method: tasks/multiplicity/{sampler,metrics}.py; computation: tasks/papers/dropout_rashomon.py.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tasks.multiplicity.common import MultiData, prepare_stage, split_inputs
from tasks.papers import dropout_rashomon as dr
from tasks.platform.stage import Paper, Stage, register_paper

TABLES = ("multiplicity", "rates", "ensemble")


class DropoutRashomonParams(BaseModel):
    """The ``dropout_rashomon`` section of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: MultiData = MultiData()
    explore: dr.ExploreParams = dr.ExploreParams()
    report: dr.ReportParams = dr.ReportParams()


PAPER = register_paper(
    Paper(
        name="dropout_rashomon",
        title="Dropout-Based Rashomon Set Exploration for Efficient Predictive Multiplicity Estimation",
        arxiv="",
        params_model=DropoutRashomonParams,
        module=str(Path(__file__).resolve()),
        claims=(
            "dropout parameters connect to properties of the Rashomon set",
            "dropout estimates multiplicity better than baselines with a 20x-5000x speed-up",
            "dropout ensembles mitigate predictive multiplicity",
        ),
        stages=(
            *(prepare_stage(ds) for ds in dr.DATASETS),
            *(Stage(f"explore_{ds}", dr.explore, params=("explore", f"data.{ds}"), inputs=split_inputs(ds),
                    outputs={**{t: f"{t}.parquet" for t in TABLES}, "metrics": "metrics.json"})
              for ds in dr.DATASETS),
            Stage("report", dr.report, params=("explore", "report"),
                  inputs={f"{t}_{ds}": f"explore_{ds}.{t}" for ds in dr.DATASETS for t in TABLES},
                  outputs={"report": "report.md", "claims": "claims.json", "summary": "summary.parquet",
                           "metrics": "metrics.json"}),
        ),
    )
)
