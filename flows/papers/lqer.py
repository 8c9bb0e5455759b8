"""LQER / L2QER on tinylm (seed: Zhang et al., "LQER: Low-Rank Quantization Error Reconstruction for
LLMs", ICML 2024, arXiv 2402.02446; catalogue ``../shared/papers/seed_catalog_B.md`` #126; setup in
``../shared/research/round2_candidates.md`` sec. 2.1).

Pipeline: prepare (char passages of the stdlib-docs corpus) -> train (tinylm, one per seed) -> quantize
(RTN, GPTQ, LQER, L2QER, GPTQ + L2QER and equal-bit RTN controls, W4A8; outlier statistics) -> serve (the
quantized tinylm through the low-bit kernels vs fp32, issue #19) -> report.

Reproduced at our scale if: the activation scale concentrates the error's spectrum (sign test), L2QER at
the largest rank recovers >= 80 % of the FP-to-RTN bits/char gap on every seed, beats LQER at equal rank and
beats the equal-bit-budget RTN control (95 % CIs over model seeds).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import model_validator

from tasks.papers.lqer import LQERParams, LQERReportParams, lqer_quantize, report_lqer
from tasks.platform.stage import Paper, Stage, register_paper
from tasks.quant.serving import ServeQuantParams, serve_stage
from tasks.quant.tinylm import TinyLMPaperParams, check_widths, tinylm_stages


class LQERPaperParams(TinyLMPaperParams):
    """The ``lqer`` section of params.yaml (``data`` and ``train`` from :class:`TinyLMPaperParams`)."""

    quantize: LQERParams = LQERParams()
    serve: ServeQuantParams = ServeQuantParams()
    report: LQERReportParams = LQERReportParams()

    @model_validator(mode="after")
    def _fits_model(self) -> LQERPaperParams:
        check_widths(self.train.model, self.quantize.weight, self.quantize.ranks)
        check_widths(self.train.model, self.serve.weight, ())
        return self


PAPER = register_paper(
    Paper(
        name="lqer",
        title="LQER: Low-Rank Quantization Error Reconstruction for LLMs",
        arxiv="2402.02446",
        params_model=LQERPaperParams,
        module=str(Path(__file__).resolve()),
        claims=(
            "the activation-induced scale shapes the error's singular values",
            "nearly-lossless W4A8 without KD / grid search / gradients",
            "L2QER beats LQER at equal rank",
            "the gain is not only extra bits (equal-bit control)",
            "1.36x fewer hardware resources",
        ),
        stages=(
            *tinylm_stages(),
            Stage("quantize", lqer_quantize, params=("quantize",),
                  inputs={"weights": "train.weights", "train_metrics": "train.metrics", "passages": "prepare.passages"},
                  outputs={"results": "results.parquet", "svd": "svd.parquet", "outliers": "outliers.parquet",
                           "quantized": "quantized.safetensors", "metrics": "metrics.json"}),
            serve_stage(),  # issue #19: the quantized tinylm through the low-bit kernels vs fp32
            Stage("report", report_lqer, params=("report",),
                  inputs={"results": "quantize.results", "svd": "quantize.svd", "outliers": "quantize.outliers",
                          "train_metrics": "train.metrics", "metrics": "quantize.metrics"},
                  outputs={"report": "report.md", "claims": "claims.json", "metrics": "metrics.json"}),
        ),
    )
)
