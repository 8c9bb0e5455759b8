"""BoA on tinylm (seed: Kim et al., "BoA: Attention-aware Post-training Quantization without Backpropagation",
ICML 2025, arXiv 2406.13474; catalogue ``../shared/papers/seed_catalog_B.md`` #22; setup in
``../shared/research/round2_candidates.md`` sec. 2.4).

Pipeline: prepare (char passages) -> train (tinylm seeds) -> quantize (weight-only RTN / GPTQ / BoA at INT2/3/4,
held-out bits/char and attention-output error) -> report.

Reproduced at our scale if: BoA's bits/char is below GPTQ's at INT2 and INT3, the gain is larger there than at
INT4, and BoA's attention-output error is below GPTQ's (95 % CIs over model seeds).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import model_validator

from tasks.papers.boa import BoAParams, BoAReportParams, boa_run, report_boa
from tasks.platform.stage import Paper, Stage, register_paper
from tasks.quant.tinylm import TinyLMPaperParams, check_widths, tinylm_stages


class BoAPaperParams(TinyLMPaperParams):
    """The ``boa`` section of params.yaml (``data`` and ``train`` from :class:`TinyLMPaperParams`)."""

    quantize: BoAParams = BoAParams()
    report: BoAReportParams = BoAReportParams()

    @model_validator(mode="after")
    def _fits_model(self) -> BoAPaperParams:
        for b in self.quantize.bits:
            check_widths(self.train.model, self.quantize.fmt(b), ())
        return self


PAPER = register_paper(
    Paper(
        name="boa",
        title="BoA: Attention-aware Post-training Quantization without Backpropagation",
        arxiv="2406.13474",
        params_model=BoAPaperParams,
        module=str(Path(__file__).resolve()),
        claims=(
            "BoA beats GPTQ at low bit widths",
            "the gain is larger at low bit widths",
            "lower attention-output error (the mechanism)",
        ),
        stages=(
            *tinylm_stages(),
            Stage("quantize", boa_run, params=("quantize",),
                  inputs={"weights": "train.weights", "train_metrics": "train.metrics", "passages": "prepare.passages"},
                  outputs={"results": "results.parquet", "quantized": "quantized.safetensors", "metrics": "metrics.json"}),
            Stage("report", report_boa, params=("report",),
                  inputs={"results": "quantize.results", "train_metrics": "train.metrics", "metrics": "quantize.metrics"},
                  outputs={"report": "report.md", "claims": "claims.json", "metrics": "metrics.json"}),
        ),
    )
)
