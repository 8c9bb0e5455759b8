"""N:M sparsity (seed: NM-SpMM, "Efficient Semi-Structured Sparse Matrix Multiplication for
general N:M sparsity", arXiv 2503.01253; catalogue: ../shared/papers/seed_catalog_A.md, #4).

Pipeline, per dataset (sklearn digits, mnist1d): prepare -> train (dense MLP, several seeds)
-> prune (magnitude N:M along each layer's reduction dim, v = 1 and NM-SpMM's v = 32) ->
finetune (mask fixed) -> evaluate (accuracy, loss, parameter/byte counts, compressed-matmul
parity) -> serve; distill (KD recovery from the dense teacher, mask fixed, fine-tuning's
budget: docs/distillation.md) -> audit (membership inference + calibration of the dense,
pruned, fine-tuned and distilled models: docs/auditing.md); then one report over both
datasets (bootstrap CIs over seeds, IQM and P(improvement) over seeds x datasets, 2PL item
response theory over the test items: docs/evaluation.md).

Reproduced at our scale if: the compressed N:M format and reference SpMM equal dense matmul
with zeros to float tolerance, and accuracy falls gracefully with N/M (fine-tuned 2:4 within
``report.tolerance_pts`` of dense). The GPU speed-up claims are tested by the kernel
benchmarks (``make bench-kernels``), not by this CPU pipeline.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator

from tasks.data_prep import DataParams, prepare, split_schema_check
from tasks.papers import nm_sparsity as nmr
from tasks.sparsity import nm
from tasks.sparsity import serving as nm_serving
from tasks.platform.stage import Paper, Stage, register_paper
from tasks.platform.tuning import FloorRule, TRIALS_SCHEMA, TuningParams, check_selection_inputs
from tasks.platform.tuning_report import merge_reports
from tasks.train import OptimParams, TrainParams, train

DATASETS = ("digits", "mnist1d")


class NMData(BaseModel):
    """One data section per dataset (same split settings, own generator options)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    digits: DataParams = DataParams(dataset="digits")
    mnist1d: DataParams = DataParams(dataset="mnist1d")


class NMSparsityParams(BaseModel):
    """The ``nm_sparsity`` section of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: NMData = NMData()
    train: TrainParams = TrainParams()
    prune: nm.PruneParams = nm.PruneParams()
    finetune: OptimParams = OptimParams(max_epochs=5)
    serve: nm_serving.ServeParams = nm_serving.ServeParams()
    distill: nmr.NMDistillParams = nmr.NMDistillParams()
    audit: nmr.NMAuditParams = nmr.NMAuditParams()
    report: nmr.ReportParams = nmr.ReportParams()
    tuning: TuningParams

    @model_validator(mode="after")
    def _nm_fits_the_model(self):
        for name in DATASETS:
            d: DataParams = getattr(self.data, name)
            if d.dataset != name:
                raise ValueError(f"data.{name}.dataset must be {name!r}, got {d.dataset!r}")
            widths = self.train.model.linear_in_features(d.num_features())
            nm.check_widths(self.prune, widths, f"dataset {name}, train.model.hidden={list(self.train.model.hidden)}")
        if len(self.train.seeds) < 2:
            raise ValueError(f"train.seeds = {list(self.train.seeds)}: need >= 2 seeds for confidence intervals")
        for what, vectors in (("distill", self.distill.vectors), ("audit", self.audit.vectors)):
            if not set(vectors) <= set(self.prune.vectors):
                raise ValueError(f"{what}.vectors = {list(vectors)}: not all in prune.vectors = {list(self.prune.vectors)}")
        pruned = {nm.parse_pattern(p) for p in self.prune.patterns}
        for p in self.distill.patterns or ():
            if nm.parse_pattern(p) not in pruned:
                raise ValueError(f"distill.patterns: {p!r} is not in prune.patterns = {list(self.prune.patterns)}")
        seeds = self.audit.seeds
        if seeds is not None and (not set(seeds) <= set(self.train.seeds) or len(set(seeds)) < 2):
            raise ValueError(f"audit.seeds = {list(seeds)}: need >= 2 seeds, all in train.seeds = {list(self.train.seeds)}")
        nmr.check_recovery_tuning(self.finetune, self.distill, self.tuning, self.train.seeds)
        return self


def _dataset_stages(ds: str) -> list[Stage]:
    split = {s: split_schema_check for s in ("train", "val", "test")}
    return [
        Stage(f"prepare_{ds}", prepare, params=(f"data.{ds}",),
              outputs={"train": "train.parquet", "val": "val.parquet", "test": "test.parquet"}, schemas=split),
        Stage(f"train_{ds}", train, params=("train",),
              inputs={"train": f"prepare_{ds}.train", "val": f"prepare_{ds}.val"},
              outputs={"weights": "weights.safetensors", "metrics": "metrics.json"}),
        Stage(f"prune_{ds}", nm.prune, params=("prune", "train"),
              inputs={"dense": f"train_{ds}.weights", "train": f"prepare_{ds}.train"},
              outputs={"weights": "weights.safetensors", "compressed": "compressed.safetensors",
                       "metrics": "metrics.json"}),
        Stage(f"finetune_{ds}", nm.finetune, params=("finetune", "train"),
              inputs={"pruned": f"prune_{ds}.weights", "train": f"prepare_{ds}.train", "val": f"prepare_{ds}.val"},
              outputs={"weights": "weights.safetensors", "metrics": "metrics.json"}),
        Stage(f"evaluate_{ds}", nm.evaluate, params=("train",),
              inputs={"dense": f"train_{ds}.weights", "pruned": f"prune_{ds}.weights",
                      "finetuned": f"finetune_{ds}.weights", "compressed": f"prune_{ds}.compressed",
                      "test": f"prepare_{ds}.test"},
              outputs={"results": "results.parquet", "predictions": "predictions.parquet"},
              schemas={"results": nm.RESULTS_SCHEMA}),
        # issue #3: the fine-tuned models served compressed through NMLinear vs dense
        Stage(f"serve_{ds}", nm_serving.serve, params=("serve", "prune", "train"),
              inputs={"finetuned": f"finetune_{ds}.weights", "test": f"prepare_{ds}.test"},
              outputs={"results": "serving.parquet", "metrics": "metrics.json"},
              schemas={"results": nm_serving.SERVE_SCHEMA}),
        # issue #5: KD from the dense model as the recovery step, masks fixed, fine-tuning's budget
        Stage(f"distill_{ds}", nmr.distill_pruned, params=("distill", "finetune", "train"),
              inputs={"dense": f"train_{ds}.weights", "pruned": f"prune_{ds}.weights",
                      "train": f"prepare_{ds}.train", "val": f"prepare_{ds}.val", "test": f"prepare_{ds}.test"},
              outputs={"weights": "weights.safetensors", "metrics": "metrics.json", "predictions": "predictions.parquet"}),
        # issue #8: membership leakage + calibration of dense, pruned, fine-tuned and distilled models
        Stage(f"audit_{ds}", nmr.audit, params=("audit", "train"),
              inputs={"dense": f"train_{ds}.weights", "pruned": f"prune_{ds}.weights",
                      "finetuned": f"finetune_{ds}.weights", "distilled": f"distill_{ds}.weights",
                      "train": f"prepare_{ds}.train", "test": f"prepare_{ds}.test"},
              outputs={"results": "audit.parquet", "plot": "audit.png", "metrics": "metrics.json"},
              schemas={"results": nmr.AUDIT_SCHEMA}),
    ]


def _tuning_stages(ds: str) -> list[Stage]:
    """issue #17: fine-tuning and KD recovery re-tuned on one budget (validation only), then
    the recovery, evaluation and audit again with the chosen configurations."""
    tune_inputs = {"dense": f"train_{ds}.weights", "pruned": f"prune_{ds}.weights",
                   "train": f"prepare_{ds}.train", "val": f"prepare_{ds}.val"}
    check_selection_inputs(f"tune_{ds}", tune_inputs)
    return [
        Stage(f"tune_{ds}", nmr.tune_recovery, params=("tuning", "finetune", "distill", "train"), inputs=tune_inputs,
              outputs={"trials": "trials.parquet", "tuned": "tuned.json"}, schemas={"trials": TRIALS_SCHEMA}),
        Stage(f"finetune_{ds}_tuned", nmr.finetune_tuned, params=("finetune", "distill", "train"),
              inputs={"tuned": f"tune_{ds}.tuned", "pruned": f"prune_{ds}.weights", "train": f"prepare_{ds}.train",
                      "val": f"prepare_{ds}.val"},
              outputs={"weights": "weights.safetensors", "metrics": "metrics.json"}),
        Stage(f"distill_{ds}_tuned", nmr.distill_pruned_tuned, params=("distill", "finetune", "train"),
              inputs={"tuned": f"tune_{ds}.tuned", "dense": f"train_{ds}.weights", "pruned": f"prune_{ds}.weights",
                      "train": f"prepare_{ds}.train", "val": f"prepare_{ds}.val", "test": f"prepare_{ds}.test"},
              outputs={"weights": "weights.safetensors", "metrics": "metrics.json", "predictions": "predictions.parquet"}),
        Stage(f"evaluate_{ds}_tuned", nm.evaluate, params=("train",),
              inputs={"dense": f"train_{ds}.weights", "pruned": f"prune_{ds}.weights",
                      "finetuned": f"finetune_{ds}_tuned.weights", "compressed": f"prune_{ds}.compressed",
                      "test": f"prepare_{ds}.test"},
              outputs={"results": "results.parquet", "predictions": "predictions.parquet"},
              schemas={"results": nm.RESULTS_SCHEMA}),
        Stage(f"audit_{ds}_tuned", nmr.audit, params=("audit", "train"),
              inputs={"dense": f"train_{ds}.weights", "pruned": f"prune_{ds}.weights",
                      "finetuned": f"finetune_{ds}_tuned.weights", "distilled": f"distill_{ds}_tuned.weights",
                      "train": f"prepare_{ds}.train", "test": f"prepare_{ds}.test"},
              outputs={"results": "audit.parquet", "plot": "audit.png", "metrics": "metrics.json"},
              schemas={"results": nmr.AUDIT_SCHEMA}),
    ]


REPORT_OUTPUTS = {"report": "report.md", "summary": "summary.parquet", "plot": "accuracy_vs_sparsity.png",
                  "metrics": "metrics.json", "claims": "claims.json", "poi": "probability_of_improvement.png",
                  "irt": "irt_items.png", "items": "irt_items.parquet", "audit": "leakage_calibration.png",
                  "audit_summary": "audit_summary.parquet"}
KINDS = ("pruned", "finetuned", "distilled")
FLOORS = tuple(
    FloorRule(f"{kind}_{ds}", f"pruned_{ds}", f"a {what} model below the pruned one it started from ({ds})")
    for ds in DATASETS for kind, what in (("finetuned", "fine-tuned"), ("distilled", "KD-recovered"))
)


def _report_inputs(suffix: str) -> dict[str, str]:
    """The report's inputs from the recovery at the paper's settings (``""``) or tuned (``"_tuned"``);
    serving is of the paper's fine-tuned models in both."""
    return {**{f"results_{ds}": f"evaluate_{ds}{suffix}.results" for ds in DATASETS},
            **{f"predictions_{ds}": f"evaluate_{ds}{suffix}.predictions" for ds in DATASETS},
            **{f"distilled_predictions_{ds}": f"distill_{ds}{suffix}.predictions" for ds in DATASETS},
            **{f"serving_{ds}": f"serve_{ds}.results" for ds in DATASETS},
            **{f"audit_{ds}": f"audit_{ds}{suffix}.results" for ds in DATASETS}}


PAPER = register_paper(
    Paper(
        name="nm_sparsity",
        title="NM-SpMM: Accelerating Matrix Multiplication Using N:M Sparsity with GPGPU",
        arxiv="2503.01253",
        params_model=NMSparsityParams,
        module=str(Path(__file__).resolve()),
        stages=(
            *(s for ds in DATASETS for s in _dataset_stages(ds)),
            *(s for ds in DATASETS for s in _tuning_stages(ds)),
            Stage("report_paper", nmr.report, params=("report", "prune", "audit"), inputs=_report_inputs(""),
                  outputs=REPORT_OUTPUTS),
            Stage("report_tuned", nmr.report, params=("report", "prune", "audit"), inputs=_report_inputs("_tuned"),
                  outputs=REPORT_OUTPUTS),
            # the paper's report with the tuned verdict of each claim (docs/contract.md, "Fair comparisons")
            Stage("report", functools.partial(merge_reports, floors=FLOORS, values=nmr.recovery_acc),
                  params=("tuning",),
                  inputs={**{f"paper_{o}": f"report_paper.{o}" for o in REPORT_OUTPUTS},
                          "tuned_claims": "report_tuned.claims", **{f"study_{ds}": f"tune_{ds}.tuned" for ds in DATASETS},
                          **{f"{s}_arm_{k}_{ds}": f"audit_{ds}{'_tuned' if s == 'tuned' else ''}.results"
                             for s in ("paper", "tuned") for k in KINDS for ds in DATASETS}},
                  outputs=REPORT_OUTPUTS),
        ),
    )
)
