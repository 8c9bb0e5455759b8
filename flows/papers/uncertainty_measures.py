"""On Information-Theoretic Measures of Predictive Uncertainty (seed 003_49ae51092b0cdefc.txt
#56; catalogue C; notes in ../shared/research/round2_candidates.md §3.4).

Claims (abstract): align "the choice of uncertainty measure with the predicting model on
in-distribution (ID) data"; "the limitations of epistemic uncertainty measures for
out-of-distribution (OOD) data"; "the disentanglement between measures varies substantially
between ID and OOD data".

Pipeline, per dataset (digits, mnist1d): prepare -> measures (deep ensembles x seeds; ID =
classes 0-7, OOD = classes 8-9 + noise) -> report. Measures: tasks/multiplicity/uncertainty.py;
computation: tasks/papers/uncertainty_measures.py.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tasks.data_prep import DataParams
from tasks.multiplicity.common import prepare_stage, split_inputs
from tasks.papers import uncertainty_measures as um
from tasks.platform.stage import Paper, Stage, register_paper


class UMData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    digits: DataParams = DataParams(dataset="digits")
    mnist1d: DataParams = DataParams(dataset="mnist1d", num_samples=3000)


class UncertaintyMeasuresParams(BaseModel):
    """The ``uncertainty_measures`` section of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: UMData = UMData()
    ensemble: um.EnsembleParams = um.EnsembleParams()


PAPER = register_paper(
    Paper(
        name="uncertainty_measures",
        title="On Information-Theoretic Measures of Predictive Uncertainty",
        arxiv="",
        params_model=UncertaintyMeasuresParams,
        module=str(Path(__file__).resolve()),
        claims=(
            "match the uncertainty measure to the predicting model on ID data",
            "epistemic measures are limited on OOD data",
            "disentanglement differs between ID and OOD data",
        ),
        stages=(
            *(prepare_stage(ds) for ds in um.DATASETS),
            *(Stage(f"measures_{ds}", um.measures, params=("ensemble", f"data.{ds}"), inputs=split_inputs(ds),
                    outputs={"scores": "scores.parquet", "correlations": "correlations.parquet",
                             "metrics": "metrics.json"}) for ds in um.DATASETS),
            Stage("report", um.report,
                  inputs={f"{t}_{ds}": f"measures_{ds}.{t}" for ds in um.DATASETS for t in ("scores", "correlations")},
                  outputs={"report": "report.md", "claims": "claims.json", "summary": "summary.parquet",
                           "metrics": "metrics.json"}),
        ),
    )
)
