"""Machine-text detection vs membership inference (seeds: Koike et al., "Machine Text Detectors
are Membership Inference Attacks", arXiv 2510.19492; Bao et al., "Fast-DetectGPT";
catalogue: ../shared/papers/seed_catalog_A.md and _B.md #113).

Pipeline: audit (train two character LMs on stdlib text, sample machine text, score members /
non-members and machine / human text with every detector and MIA statistic, transfer table with
AUC CIs and the cross-task Spearman rho) -> report.

Reproduced at our scale if: rho's CI lies above 0.6, Binoculars is top as an MIA within its CI,
and Fast-DetectGPT beats the likelihood / log-rank / entropy baselines as a detector.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tasks.audit.text_detect import TextDetectParams, text_detection_audit
from tasks.papers.text_detection import TextReportParams, report_text
from tasks.platform.stage import Paper, Stage, register_paper


class TextDetectionParams(BaseModel):
    """The ``text_detection`` section of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    audit: TextDetectParams = TextDetectParams()
    report: TextReportParams = TextReportParams()


PAPER = register_paper(
    Paper(
        name="text_detection",
        title="Machine Text Detectors are Membership Inference Attacks",
        arxiv="2510.19492",
        params_model=TextDetectionParams,
        module=str(Path(__file__).resolve()),
        claims=(
            "detector and MIA rankings correlate across tasks (rho > 0.6)",
            "Binoculars is state of the art on MIA too",
            "Fast-DetectGPT beats likelihood / log-rank / entropy",
        ),
        stages=(
            Stage("audit", text_detection_audit, params=("audit",),
                  outputs={"transfer": "transfer.parquet", "summary": "metrics.json", "samples": "samples.txt"}),
            Stage("report", report_text, params=("report",),
                  inputs={"transfer": "audit.transfer", "summary": "audit.summary"},
                  outputs={"report": "report.md", "claims": "claims.json", "metrics": "metrics.json"}),
        ),
    )
)
