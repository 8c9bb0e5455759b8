"""CoLoR-Filter: Conditional Loss Reduction Filtering for Targeted Language Model Pre-training
(Brandfonbrener et al. 2024; seed 002_e77702a5ff075a7b.txt #18; notes in
../shared/research/round2_candidates.md §1.5).

Claims (abstract): a "simple and computationally efficient selection criterion based on the
relative loss values of two auxiliary models"; "favorable scaling both as we subselect more
aggressively and using small auxiliary models to select data for large target models"; "25x
less data for Books and 11x less data for the downstream tasks".

Pipeline: corpus (target = held-out pydoc reference sections; pool = other sections + stdlib
docstrings + stdlib source) -> score (prior and conditional tinylm; per-passage losses) ->
pretrain (per seed and arm: select, train a fresh tinylm, bits/char on the target evaluation
set) -> report.

Reproduced if: the largest tau beats random selection at equal tokens (paired CI below 0);
the mean loss does not increase with tau; tau_max on the budget is within 0.01 bits/char of (or
below) random on multiplier x the data. Selector: tasks/data_selection/color_filter.py;
computation: tasks/papers/color_filter.py.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tasks.papers import color_filter as cf
from tasks.platform.stage import Paper, Stage, register_paper


class ColorFilterParams(BaseModel):
    """The ``color_filter`` section of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    corpus: cf.CorpusParams = cf.CorpusParams()
    score: cf.ScoreParams = cf.ScoreParams()
    pretrain: cf.TrainParams = cf.TrainParams()


PAPER = register_paper(
    Paper(
        name="color_filter",
        title="CoLoR-Filter: Conditional Loss Reduction Filtering for Targeted Language Model Pre-training",
        arxiv="",
        params_model=ColorFilterParams,
        module=str(Path(__file__).resolve()),
        claims=(
            "CoLoR-selected data lowers the target-domain loss vs random at equal tokens",
            "favorable scaling as selection gets more aggressive (tau)",
            "less data needed than random selection",
        ),
        stages=(
            Stage("corpus", cf.build_corpus, params=("corpus",),
                  outputs={"corpus": "corpus.parquet", "metrics": "metrics.json"}),
            Stage("score", cf.score, params=("score",), inputs={"corpus": "corpus.corpus"},
                  outputs={"scores": "scores.parquet", "metrics": "metrics.json"}),
            Stage("pretrain", cf.train_targets, params=("pretrain",),
                  inputs={"corpus": "corpus.corpus", "scores": "score.scores"},
                  outputs={"results": "results.parquet", "selections": "selections.parquet",
                           "metrics": "metrics.json"}),
            Stage("report", cf.report, params=("pretrain",), inputs={"results": "pretrain.results"},
                  outputs={"report": "report.md", "claims": "claims.json", "summary": "summary.parquet",
                           "metrics": "metrics.json"}),
        ),
    )
)
