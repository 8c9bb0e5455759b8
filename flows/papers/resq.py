"""ResQ on tinylm (seed: Saxena et al., "ResQ: Mixed-Precision Quantization of Large Language Models with
Low-Rank Residuals", arXiv 2412.14363; catalogue ``../shared/papers/seed_catalog_B.md`` #245; setup in
``../shared/research/round2_candidates.md`` sec. 2.3).

Pipeline: prepare (char passages) -> train (tinylm seeds) -> quantize (W4A4: RTN, SpinQuant's random Hadamard
rotations, rotation at 4 bits, ResQ with PCA / random / top-channel subspaces, a uniform 4.5-bit control) -> report.

Reproduced at our scale if: ResQ's held-out bits/char is below SpinQuant's, the PCA subspace beats the random and
top-channel subspaces, and ResQ beats the uniform 4.5-bit control (95 % CIs over model seeds).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import model_validator

from tasks.papers.resq import ResQParams, ResQReportParams, report_resq, resq_quantize
from tasks.platform.stage import Paper, Stage, register_paper
from tasks.quant.fakequant import WeightQuant
from tasks.quant.tinylm import TinyLMPaperParams, check_widths, tinylm_stages


class ResQPaperParams(TinyLMPaperParams):
    """The ``resq`` section of params.yaml (``data`` and ``train`` from :class:`TinyLMPaperParams`)."""

    quantize: ResQParams = ResQParams()
    report: ResQReportParams = ResQReportParams()

    @model_validator(mode="after")
    def _fits_model(self) -> ResQPaperParams:
        check_widths(self.train.model, WeightQuant(bits=self.quantize.low_bits, group=None), ())
        m = self.train.model
        for width, what in ((m.d_model, "d_model"), (m.d_ff, "d_ff")):
            if width // self.quantize.rank_div < 1:
                raise ValueError(f"rank_div={self.quantize.rank_div} leaves no 8-bit subspace for {what}={width}")
        return self


PAPER = register_paper(
    Paper(
        name="resq",
        title="ResQ: Mixed-Precision Quantization of Large Language Models with Low-Rank Residuals",
        arxiv="2412.14363",
        params_model=ResQPaperParams,
        module=str(Path(__file__).resolve()),
        claims=(
            "ResQ beats SpinQuant-style rotation-only W4A4",
            "the PCA subspace beats a random subspace and top channels",
            "the gain is not only extra bits",
            "up to 3x speedup (not testable on CPU)",
        ),
        stages=(
            *tinylm_stages(),
            Stage("quantize", resq_quantize, params=("quantize",),
                  inputs={"weights": "train.weights", "train_metrics": "train.metrics", "passages": "prepare.passages"},
                  outputs={"results": "results.parquet", "outliers": "outliers.parquet"}),
            Stage("report", report_resq, params=("report",),
                  inputs={"results": "quantize.results", "outliers": "quantize.outliers", "train_metrics": "train.metrics"},
                  outputs={"report": "report.md", "claims": "claims.json", "metrics": "metrics.json"}),
        ),
    )
)
