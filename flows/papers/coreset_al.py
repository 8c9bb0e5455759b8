"""Active Learning for Convolutional Neural Networks: A Core-Set Approach (Sener & Savarese,
ICLR 2018, arXiv 1708.00489; seed 003_49ae51092b0cdefc.txt #60; catalogue C; notes in
../shared/research/round2_candidates.md §1.2).

Claims (abstract): "many of the active learning heuristics in the literature are not effective
when applied to CNNs in batch setting"; a "theoretical result characterizing the performance of
any selected subset using the geometry of the datapoints"; the core-set approach "significantly
outperforms existing approaches in image classification experiments by a large margin".

Pipeline, per dataset (digits, mnist1d): prepare -> al (random, entropy, margin, BALD, greedy
and robust k-center, BADGE x seeds through one AL loop) and batch (random, entropy, k-center at
each of ``loop.batch_study.batch_sizes``, same label budget) -> report (paired AULC differences by
(dataset, seed)). Reproduced if: uncertainty selectors do not beat random (CI of the AULC
difference not above 0) for at least half of them; Spearman(covering radius, error) at equal
set size has a CI above 0; AULC(k-center) beats random and the uncertainty baseline (both
paired CIs above 0); "in batch setting": AULC(k-center) - AULC(baseline) has a CI above 0 at the
largest batch and grows from the smallest to the largest (difference-of-differences CI above 0).
Extension (not a claim of the paper): k-center vs BADGE (Ash et al. 2020), a later baseline.
Method: tasks/data_selection/{kcenter,uncertainty,badge,active}.py; computation:
tasks/papers/coreset_al.py.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tasks.data_prep import DataParams
from tasks.data_selection.active import CURVE_SCHEMA, PICKS_SCHEMA
from tasks.multiplicity.common import prepare_stage, split_inputs
from tasks.papers import coreset_al as ca
from tasks.platform.stage import Paper, Stage, register_paper


class CoresetData(BaseModel):
    """One split per dataset (the train split is the AL pool; test scores every round)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    digits: DataParams = DataParams(dataset="digits", val_fraction=0.15, test_fraction=0.25)
    mnist1d: DataParams = DataParams(dataset="mnist1d", num_samples=4000, val_fraction=0.15, test_fraction=0.25)


class CoresetALParams(BaseModel):
    """The ``coreset_al`` section of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: CoresetData = CoresetData()
    loop: ca.LoopParams = ca.LoopParams()
    report: ca.ReportParams = ca.ReportParams()


PAPER = register_paper(
    Paper(
        name="coreset_al",
        title="Active Learning for Convolutional Neural Networks: A Core-Set Approach",
        arxiv="1708.00489",
        params_model=CoresetALParams,
        module=str(Path(__file__).resolve()),
        claims=(
            "uncertainty heuristics are not effective in the batch setting",
            "the covering radius characterises a subset's performance",
            "core-set (k-center) outperforms random and uncertainty sampling",
            "core-set's advantage over uncertainty sampling holds at large batches and grows with the batch size",
            "(extension) core-set outperforms BADGE",
        ),
        stages=(
            *(prepare_stage(ds) for ds in ca.DATASETS),
            *(Stage(f"al_{ds}", ca.run_al, params=("loop",), inputs=split_inputs(ds),
                    outputs={"curves": "curves.parquet", "selections": "selections.parquet", "metrics": "metrics.json"},
                    schemas={"curves": CURVE_SCHEMA, "selections": PICKS_SCHEMA})
              for ds in ca.DATASETS),
            *(Stage(f"batch_{ds}", ca.run_batch_study, params=("loop",), inputs=split_inputs(ds),
                    outputs={"curves": "curves.parquet", "selections": "selections.parquet", "metrics": "metrics.json"},
                    schemas={"curves": ca.BATCH_CURVE_SCHEMA, "selections": ca.BATCH_PICKS_SCHEMA})
              for ds in ca.DATASETS),
            Stage("report", ca.report, params=("loop", "report"),
                  inputs={**{f"curves_{ds}": f"al_{ds}.curves" for ds in ca.DATASETS},
                          **{f"batch_{ds}": f"batch_{ds}.curves" for ds in ca.DATASETS}},
                  outputs={"report": "report.md", "claims": "claims.json", "summary": "summary.parquet",
                           "metrics": "metrics.json"}),
        ),
    )
)
