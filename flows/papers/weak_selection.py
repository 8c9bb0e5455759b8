"""Towards a statistical theory of data selection under weak supervision (Kolossov, Montanari &
Tandon 2023; seed 003_49ae51092b0cdefc.txt #8; notes in ../shared/research/round2_candidates.md §1.3).

Claims (abstract): "Data selection can be very effective, in particular beating training on the
full sample in some cases"; "certain popular choices in data selection methods (e.g. unbiased
reweighted subsampling, or influence function-based subsampling) can be substantially
suboptimal".

Pipeline: select (simulated well-specified and misspecified logistic data; a weak surrogate
picks n/N of the pool with uncertainty or influence sampling, unweighted or 1/pi reweighted;
every arm's ridge strength chosen on validation) -> report.

Reproduced if: some unweighted scheme beats the full sample in at least one (setting, n/N)
cell (paired CI below 0); the best unweighted scheme beats random, its IPW version and
influence subsampling in at least half of the cells. Selectors:
tasks/data_selection/weak_supervision.py; computation: tasks/papers/weak_selection.py.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tasks.papers import weak_selection as ws
from tasks.platform.stage import Paper, Stage, register_paper


class WeakSelectionParams(BaseModel):
    """The ``weak_selection`` section of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    select: ws.SimulateParams = ws.SimulateParams()


PAPER = register_paper(
    Paper(
        name="weak_selection",
        title="Towards a statistical theory of data selection under weak supervision",
        arxiv="",
        params_model=WeakSelectionParams,
        module=str(Path(__file__).resolve()),
        claims=(
            "data selection can beat training on the full sample",
            "unbiased reweighted subsampling can be substantially suboptimal",
            "influence-function subsampling can be substantially suboptimal",
        ),
        stages=(
            Stage("select", ws.run, params=("select",),
                  outputs={"results": "results.parquet", "metrics": "metrics.json"}),
            Stage("report", ws.report, params=("select",), inputs={"results": "select.results"},
                  outputs={"report": "report.md", "claims": "claims.json", "summary": "summary.parquet",
                           "metrics": "metrics.json"}),
        ),
    )
)
