"""SpinQuant on tinylm (seed: Liu et al., "SpinQuant: LLM Quantization with Learned Rotations", arXiv
2405.16406; catalogue ``../shared/papers/seed_catalog_B.md`` #201; setup in
``../shared/research/round2_candidates.md`` sec. 2).

Pipeline: prepare (char passages) -> train (tinylm seeds) -> quantize (W4A4 and W4A4KV4 RTN without rotation,
with random orthogonal / Hadamard R1+R2+R4 draws and with R1/R2 learned by Cayley SGD; outlier statistics;
synthetic outlier-layer check) -> serve (the quantized tinylm through the low-bit kernels vs fp32, issue #19)
-> report.

Reproduced at our scale if: rotation lowers the W4A4 error (on tinylm when it has outlier inputs, else on
the synthetic layer; 95 % CI over seeds), random rotations spread widely, learned rotations beat random ones
(the mean Hadamard draw and the best random draw; W4A4 and W4A4KV4) and keep the full-precision function.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import model_validator

from tasks.papers.spinquant import SpinQuantParams, SpinQuantReportParams, report_spinquant, spinquant_quantize
from tasks.platform.stage import Paper, Stage, register_paper
from tasks.quant.serving import ServeQuantParams, serve_stage
from tasks.quant.tinylm import TinyLMPaperParams, check_widths, tinylm_stages


class SpinQuantPaperParams(TinyLMPaperParams):
    """The ``spinquant`` section of params.yaml (``data`` and ``train`` from :class:`TinyLMPaperParams`)."""

    quantize: SpinQuantParams = SpinQuantParams()
    serve: ServeQuantParams = ServeQuantParams()
    report: SpinQuantReportParams = SpinQuantReportParams()

    @model_validator(mode="after")
    def _fits_model(self) -> SpinQuantPaperParams:
        check_widths(self.train.model, self.quantize.weight, ())
        check_widths(self.train.model, self.serve.weight, ())
        return self


PAPER = register_paper(
    Paper(
        name="spinquant",
        title="SpinQuant: LLM Quantization with Learned Rotations",
        arxiv="2405.16406",
        params_model=SpinQuantPaperParams,
        module=str(Path(__file__).resolve()),
        claims=(
            "rotations narrow the W4A4 gap (outlier-gated)",
            "random rotations vary widely",
            "learned rotations beat random ones (W4A4)",
            "learned rotations beat the best random draw",
            "learned rotations beat random ones (W4A4KV4)",
            "rotations keep the full-precision function",
        ),
        stages=(
            *tinylm_stages(),
            Stage("quantize", spinquant_quantize, params=("quantize",),
                  inputs={"weights": "train.weights", "train_metrics": "train.metrics", "passages": "prepare.passages"},
                  outputs={"results": "results.parquet", "outliers": "outliers.parquet", "synthetic": "synthetic.parquet",
                           "learned": "learned.parquet"}),
            serve_stage(),  # issue #19: the quantized tinylm through the low-bit kernels vs fp32
            Stage("report", report_spinquant, params=("report",),
                  inputs={"results": "quantize.results", "outliers": "quantize.outliers", "synthetic": "quantize.synthetic",
                          "learned": "quantize.learned", "train_metrics": "train.metrics"},
                  outputs={"report": "report.md", "claims": "claims.json", "metrics": "metrics.json"}),
        ),
    )
)
