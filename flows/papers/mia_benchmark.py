"""Membership-inference benchmark (seeds: "TDDBench: A Benchmark for Training data detection",
"Pandora's White-Box"; LiRA and RMIA as the model-based attacks; catalogue:
../shared/papers/seed_catalog_A.md, #11-#12), plus a calibration audit of the target models.

Pipeline, per dataset (digits, breast_cancer, mnist1d): prepare -> membership (balanced member/non-member
index file of the target m0 and shadows m1..mR) -> shadows (target + shadow MLPs trained by the
shared ``fit``) -> attack (loss, entropy, modified entropy, gradient norm, reference loss, LiRA
offline/online, RMIA; AUC with CIs, TPR at FPR <= x, log-log ROC) and calibrate (ECE, Brier, NLL,
reliability diagram); compress_digits (the digits target pruned to N:M with nm_sparsity's
``prune`` / ``finetune`` cores, then re-audited: how pruning changes leakage and calibration);
then one report.

Reproduced at our scale if: model-based attacks beat metric-based ones (TDDBench ordering), the
best TPR at 1% FPR stays low ("generally unsatisfactory"), LiRA-online beats loss at low FPR,
and the white-box gradient norm beats the black-box loss (rules in the report).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator

from tasks.data_prep import DataParams, prepare, split_schema_check
from tasks.papers import mia_benchmark as mb
from tasks.platform.stage import Paper, Stage, register_paper

DATASETS = ("digits", "breast_cancer", "mnist1d")


class MIAData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    digits: DataParams = DataParams(dataset="digits", val_fraction=0.3, test_fraction=0.2)
    breast_cancer: DataParams = DataParams(dataset="breast_cancer", val_fraction=0.3, test_fraction=0.2)
    mnist1d: DataParams = DataParams(dataset="mnist1d", num_samples=4000, val_fraction=0.3, test_fraction=0.2)


class MIAAudits(BaseModel):
    """One audit section per dataset (shadow counts and epochs differ)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    digits: mb.MIAParams = mb.MIAParams()
    breast_cancer: mb.MIAParams = mb.MIAParams()
    mnist1d: mb.MIAParams = mb.MIAParams()


class MIABenchmarkParams(BaseModel):
    """The ``mia_benchmark`` section of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: MIAData = MIAData()
    mia: MIAAudits = MIAAudits()
    compress: mb.CompressionAuditParams = mb.CompressionAuditParams()
    report: mb.MIAReportParams = mb.MIAReportParams()

    @model_validator(mode="after")
    def _datasets_match(self):
        for name in DATASETS:
            if getattr(self.data, name).dataset != name:
                raise ValueError(f"data.{name}.dataset must be {name!r}")
        return self


def _dataset_stages(ds: str) -> list[Stage]:
    split = {s: split_schema_check for s in ("train", "val", "test")}
    sec = f"mia.{ds}"
    return [
        Stage(f"prepare_{ds}", prepare, params=(f"data.{ds}",),
              outputs={"train": "train.parquet", "val": "val.parquet", "test": "test.parquet"}, schemas=split),
        Stage(f"membership_{ds}", mb.membership_stage, params=(sec,),
              inputs={"pool": f"prepare_{ds}.train"}, outputs={"membership": "membership.parquet"}),
        Stage(f"shadows_{ds}", mb.shadows_stage, params=(sec,),
              inputs={"pool": f"prepare_{ds}.train", "membership": f"membership_{ds}.membership",
                      "val": f"prepare_{ds}.val"},
              outputs={"weights": "weights.safetensors", "metrics": "metrics.json"}),
        Stage(f"attack_{ds}", mb.attack_stage, params=(sec,),
              inputs={"weights": f"shadows_{ds}.weights", "pool": f"prepare_{ds}.train",
                      "membership": f"membership_{ds}.membership", "population": f"prepare_{ds}.val"},
              outputs={"metrics": "attacks.parquet", "scores": "scores.parquet", "roc": "roc.png",
                       "timing": "metrics.json"}),
        Stage(f"calibrate_{ds}", mb.calibrate_stage, params=(sec,),
              inputs={"weights": f"shadows_{ds}.weights", "test": f"prepare_{ds}.test", "pool": f"prepare_{ds}.train"},
              outputs={"metrics": "metrics.json", "reliability": "reliability.png"}),
    ]


def _report_inputs() -> dict[str, str]:
    out = {}
    for ds in DATASETS:
        out.update({
            f"attacks_{ds}": f"attack_{ds}.metrics", f"timing_{ds}": f"shadows_{ds}.metrics",
            f"calibration_{ds}": f"calibrate_{ds}.metrics", f"roc_{ds}": f"attack_{ds}.roc",
            f"reliability_{ds}": f"calibrate_{ds}.reliability",
        })
    return out


PAPER = register_paper(
    Paper(
        name="mia_benchmark",
        title="TDDBench: A Benchmark for Training data detection (+ LiRA, RMIA, Pandora's White-Box)",
        arxiv="",
        params_model=MIABenchmarkParams,
        module=str(Path(__file__).resolve()),
        claims=(
            "model-based detection beats metric-based detection",
            "TDD performance is generally unsatisfactory",
            "LiRA online beats the loss attack at low FPR",
            "white-box gradient-norm attacks beat black-box loss",
        ),
        stages=(
            *(s for ds in DATASETS for s in _dataset_stages(ds)),
            Stage("compress_digits", mb.compression_audit_stage, params=("mia.digits", "compress"),
                  inputs={"weights": "shadows_digits.weights", "pool": "prepare_digits.train",
                          "membership": "membership_digits.membership", "val": "prepare_digits.val",
                          "test": "prepare_digits.test"},
                  outputs={"results": "results.parquet"}),
            Stage("report", mb.report_mia, params=("report",),
                  inputs={**_report_inputs(), "compression": "compress_digits.results"},
                  outputs={"report": "report.md", "claims": "claims.json", "metrics": "metrics.json",
                           **{f"{k}_{ds}": f"{k}_{ds}.png" for ds in DATASETS for k in ("roc", "reliability")}}),
        ),
    )
)
