"""The quantization stage's cost (issue 14): every arm of ``lqer``, ``spinquant``, ``resq`` and ``boa`` with
verdicts, through their Prefect flows, and what it costs beside the tinylm training.

    python benchmarks/bench_quant_papers.py --profile smoke|full [--paper NAME ...] [--out PATH]

The four papers share their ``prepare`` and ``train`` stages (``store/_shared``): the first paper to run trains
the tinylm seeds, the others reuse them. The goal is measured on what comes after: the sum over papers of
every stage but ``prepare``/``train`` (``quantization_s``), which is to stay under 25 min on 2 cores in the full
profile; the training (``train_s``, once) is reported beside it. Per stage: wall seconds; per paper: wall and
CPU seconds, load average before/after, cached/reused stages, the report's verdicts and the seconds of each arm as
its stage logged them (``arm_s``, from the stage's MLflow run); held-out bits/char per arm are in each paper's MLflow
stage runs and report. Output: ``benchmarks/results/quant_papers_<profile>.json``
(atomic) + one MLflow run in experiment ``bench-kernels`` (``make bench-quant-papers``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness import log_mlflow, time_papers, write_json_atomic  # noqa: E402

PAPERS = ("lqer", "spinquant", "resq", "boa")
SHARED = ("prepare", "train")
GOAL_S = 25 * 60


def arm_seconds(parent_run_id: str | None) -> dict[str, dict[str, float]]:
    """Per stage after ``train``, the seconds each arm took as the stage logged them (MLflow metrics of the
    stage's nested run named ``<arm>_s``, e.g. lqer's ``gptq_s``, ``l2qer_k32_s``; per model seed, as the
    paper's stage measures them), read back from the paper's parent run."""
    if not parent_run_id:
        return {}
    from mlflow.tracking import MlflowClient

    from tasks.platform.tracking import tracking_uri

    client = MlflowClient(tracking_uri())
    exp = client.get_run(parent_run_id).info.experiment_id
    out: dict[str, dict[str, float]] = {}
    for run in client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'"):
        stage = run.data.tags.get("reprolab.stage", run.info.run_name)
        if stage in SHARED:
            continue
        arms = {k[:-2]: v for k, v in run.data.metrics.items() if k.endswith("_s")}  # not stage_seconds
        if arms:
            out[stage] = dict(sorted(arms.items()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", choices=("smoke", "full"), default="smoke")
    ap.add_argument("--paper", action="append", choices=PAPERS, default=None, help="a subset (repeatable)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    for k, v in {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                 "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1"}.items():
        os.environ.setdefault(k, v)
    t0 = time.perf_counter()
    papers = time_papers(args.paper or PAPERS, args.profile)
    for rec in papers.values():
        rec["arm_s"] = arm_seconds(rec.get("mlflow_run_id"))
    quant_s = sum(s for rec in papers.values() for st, s in rec["stages_s"].items() if st not in SHARED)
    train_s = sum(rec["stages_s"].get("train", 0.0) for rec in papers.values()
                  if "train" not in rec["cached"] + rec["reused"])
    out = {"profile": args.profile, "papers": papers, "quantization_s": quant_s, "train_s": train_s,
           "goal_s": GOAL_S, "goal_met": quant_s <= GOAL_S if args.profile == "full" else None,
           "total_wall_s": time.perf_counter() - t0, "cpus": os.cpu_count(), "machine": platform.machine(),
           "records": [{"paper": n, "flow_wall_s": r["flow_wall_s"], "flow_cpu_s": r["flow_cpu_s"]}
                       for n, r in papers.items()]}
    path = Path(args.out or ROOT / f"benchmarks/results/quant_papers_{args.profile}.json")
    write_json_atomic(path, out)
    log_mlflow(out["records"], path, f"bench-quant-papers-{args.profile}", {"profile": args.profile},
               key=lambda r: r["paper"], metrics=("flow_wall_s", "flow_cpu_s"))
    print(f"wrote {path}: quantization stages {quant_s:.0f} s (goal {GOAL_S} s), tinylm training {train_s:.0f} s, "
          f"total {out['total_wall_s']:.0f} s")
    for name, rec in papers.items():
        print(f"  {name}: {rec['flow_wall_s']:.0f} s wall, {rec['flow_cpu_s']:.0f} CPU-s, reused {rec['reused']}, "
              f"verdicts {sorted(rec.get('verdicts', {}).values())}")
        for stage, arms in rec["arm_s"].items():
            print(f"    {stage}: " + ", ".join(f"{k} {v:.2f} s" for k, v in arms.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
