"""DP auditing (seed: Shi & Ma, "Auditing Differential Privacy in the Black-Box Setting",
arXiv 2503.12045; catalogue: ../shared/papers/seed_catalog_A.md, #10), with the epsilon
lower-bound anchors (Clopper-Pearson, GDP, one-run) and DP-SGD (Opacus) canary audits.

Pipeline: gaussian (known mechanisms: correct mu-GDP and half noise; epsilon bounds, the
conformal f-DP audit's type I / power, trade-off band coverage, Opacus golden values);
prepare -> dpsgd (one DP-SGD run per target epsilon + a non-private run, each audited in one
run with mislabelled canaries) and dpsgd_many (R runs without and R with one mislabelled
canary per target epsilon, audited with Clopper-Pearson and the GDP route); report.

Reproduced at our scale if: type I <= nominal, the half-noise bug is flagged with power rising
in the budget, the band covers the true curve at the nominal rate, every lower bound stays
below the true/accountant epsilon (one-run and many-run DP-SGD audits alike), and DP-SGD
collapses the canary leakage.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tasks.data_prep import DataParams, prepare, split_schema_check
from tasks.papers import dp_audit as dp
from tasks.platform.stage import Paper, Stage, register_paper


class DPAuditParams(BaseModel):
    """The ``dp_audit`` section of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gaussian: dp.GaussianAuditParams = dp.GaussianAuditParams()
    data: DataParams = DataParams(dataset="digits", val_fraction=0.3, test_fraction=0.15)
    dpsgd: dp.DPSGDAuditParams = dp.DPSGDAuditParams()
    dpsgd_many: dp.ManyRunAuditParams = dp.ManyRunAuditParams()
    report: dp.DPReportParams = dp.DPReportParams()


PAPER = register_paper(
    Paper(
        name="dp_audit",
        title="Auditing Differential Privacy in the Black-Box Setting",
        arxiv="2503.12045",
        params_model=DPAuditParams,
        module=str(Path(__file__).resolve()),
        claims=(
            "conformal audit controls type I error in finite samples",
            "under MLR the audit also controls type II error",
            "finite-sample confidence bands for the trade-off function",
        ),
        stages=(
            Stage("gaussian", dp.gaussian_audit_stage, params=("gaussian",),
                  outputs={"bounds": "bounds.parquet", "metrics": "metrics.json", "band": "band.png"}),
            Stage("prepare", prepare, params=("data",),
                  outputs={"train": "train.parquet", "val": "val.parquet", "test": "test.parquet"},
                  schemas={s: split_schema_check for s in ("train", "val", "test")}),
            Stage("dpsgd", dp.dpsgd_audit_stage, params=("dpsgd",),
                  inputs={"train": "prepare.train", "val": "prepare.val", "test": "prepare.test"},
                  outputs={"results": "results.parquet", "metrics": "metrics.json"}),
            Stage("dpsgd_many", dp.dpsgd_many_run_stage, params=("dpsgd_many",),
                  inputs={"train": "prepare.train", "val": "prepare.val", "test": "prepare.test"},
                  outputs={"results": "results.parquet", "scores": "scores.parquet", "metrics": "metrics.json"}),
            Stage("report", dp.report_dp, params=("report",),
                  inputs={"bounds": "gaussian.bounds", "gaussian": "gaussian.metrics",
                          "dpsgd": "dpsgd.results", "many": "dpsgd_many.results", "band": "gaussian.band"},
                  outputs={"report": "report.md", "claims": "claims.json", "metrics": "metrics.json", "band": "band.png"}),
        ),
    )
)
