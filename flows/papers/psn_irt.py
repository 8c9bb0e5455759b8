"""Lost in Benchmarks? Rethinking Large Language Model Benchmarking with Item Response Theory
(PSN-IRT; arXiv 2505.15055; seed 003_49ae51092b0cdefc.txt #22; catalogue C; notes in
../shared/research/round2_candidates.md §3.5).

Claims (abstract): PSN-IRT gives "accurate and reliable estimations of item characteristics
and model abilities"; it can "construct smaller benchmarks while maintaining stronger
alignment with human preference"; current benchmarks show shortcomings in measurement quality.

Pipeline: recover (simulated 4PL matrices) ; prepare_digits -> zoo_digits (model zoo) ->
shrink_digits (PSN-selected vs random item subsets) ; report.

Reproduced if: PSN-IRT's difficulty recovery has a 95% CI above 0.9 (Spearman) and is not
worse than the 2PL; PSN-selected k <= 50 item subsets rank the models closer to the
reference-split ranking than random subsets (paired Kendall-tau CI above 0).
Method: tasks/multiplicity/psn_irt.py; computation: tasks/papers/psn_irt.py.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tasks.data_prep import DataParams
from tasks.multiplicity.zoo import ZooParams, build_zoo, check_probs_table
from tasks.multiplicity.common import prepare_stage, split_inputs
from tasks.papers import psn_irt as pp
from tasks.platform.stage import Paper, Stage, register_paper


class PSNData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    digits: DataParams = DataParams(dataset="digits")


class PSNIRTParams(BaseModel):
    """The ``psn_irt`` section of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: PSNData = PSNData()
    recover: pp.RecoverParams = pp.RecoverParams()
    zoo: ZooParams = ZooParams()
    shrink: pp.ShrinkParams = pp.ShrinkParams()
    report: pp.ReportParams = pp.ReportParams()


ZOO_OUTPUTS = {"probs": "probs.parquet", "models": "models.parquet", "metrics": "metrics.json"}

PAPER = register_paper(
    Paper(
        name="psn_irt",
        title="Lost in Benchmarks? Rethinking Large Language Model Benchmarking with Item Response Theory",
        arxiv="2505.15055",
        params_model=PSNIRTParams,
        module=str(Path(__file__).resolve()),
        claims=(
            "PSN-IRT estimates item characteristics and abilities accurately",
            "PSN-IRT builds smaller benchmarks aligned with human preference",
        ),
        stages=(
            Stage("recover", pp.recover, params=("recover",),
                  outputs={"recovery": "recovery.parquet", "metrics": "metrics.json"}),
            prepare_stage("digits"),
            Stage("zoo_digits", build_zoo, params=("zoo",), inputs=split_inputs("digits"),
                  outputs=ZOO_OUTPUTS, schemas={"probs": check_probs_table}),
            Stage("shrink_digits", pp.shrink, params=("shrink",), inputs={"probs": "zoo_digits.probs"},
                  outputs={"subsets": "subsets.parquet", "items": "items.parquet", "metrics": "metrics.json"}),
            Stage("report", pp.report, params=("report",),
                  inputs={"recovery": "recover.recovery", "subsets": "shrink_digits.subsets",
                          "items": "shrink_digits.items"},
                  outputs={"report": "report.md", "claims": "claims.json", "summary": "summary.parquet",
                           "metrics": "metrics.json"}),
        ),
    )
)
