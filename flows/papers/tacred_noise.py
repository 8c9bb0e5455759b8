"""Noise in Relation Classification Dataset TACRED: Characterization and Reduction (seed
001_d31d1b4d47488510.txt; catalogue A; notes in ../shared/research/round2_candidates.md §1.1).

Claims (abstract): the majority of TACRED's noise is in the negatives ("no-relation"); the
Intrinsic Strategy (false negatives -> nearest negatives) with elimination gives "an average 4%
F1-score improvement" while reannotation "does not improve"; the Extrinsic Strategy (a clean
subset as reference) gives +3.8% / +4.4% (elimination / reannotation), and +5.8% / +5.6% when
extended to positives.

Analogue: digits with class 0 as "no-relation" and injected TACRED-like noise whose exact
record we keep. Pipeline: prepare -> clean (noise, flags, retrained versions x seeds) ->
report. Reproduced if (per claim): paired F1 CIs against the noisy baseline above 0 (IS-E, EN,
RN; ENP > EN and RNP > RN), IS-R's CI not above 0; flags beat random flagging in precision.
Claim 1 is circular here (we choose where the noise is): not testable. Method:
tasks/data_selection/noise.py; computation: tasks/papers/tacred_noise.py.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tasks.data_prep import DataParams, prepare, split_schema_check
from tasks.papers import tacred_noise as tn
from tasks.platform.stage import Paper, Stage, register_paper

SPLITS = ("train", "val", "test")


class TacredNoiseParams(BaseModel):
    """The ``tacred_noise`` section of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: DataParams = DataParams(dataset="digits", val_fraction=0.15, test_fraction=0.25)
    clean: tn.CleanParams = tn.CleanParams()


PAPER = register_paper(
    Paper(
        name="tacred_noise",
        title="Noise in Relation Classification Dataset TACRED: Characterization and Reduction",
        arxiv="",
        params_model=TacredNoiseParams,
        module=str(Path(__file__).resolve()),
        claims=(
            "most noise is in the negatives (circular in the analogue)",
            "the strategies identify noisy examples",
            "IS elimination improves F1, reannotation does not",
            "ES elimination and reannotation improve F1",
            "ES extended to positives improves further",
        ),
        stages=(
            Stage("prepare", prepare, params=("data",), outputs={s: f"{s}.parquet" for s in SPLITS},
                  schemas={s: split_schema_check for s in SPLITS}),
            Stage("clean", tn.clean, params=("clean",), inputs={s: f"prepare.{s}" for s in SPLITS},
                  outputs={"flags": "flags.parquet", "record": "record.parquet", "results": "results.parquet",
                           "metrics": "metrics.json"},
                  schemas={"flags": tn.FLAGS_SCHEMA, "record": tn.RECORD_SCHEMA, "results": tn.RESULTS_SCHEMA}),
            Stage("report", tn.report, params=("clean",),
                  inputs={"flags": "clean.flags", "record": "clean.record", "results": "clean.results",
                          "train": "prepare.train"},
                  outputs={"report": "report.md", "claims": "claims.json", "summary": "summary.parquet",
                           "metrics": "metrics.json"}),
        ),
    )
)
