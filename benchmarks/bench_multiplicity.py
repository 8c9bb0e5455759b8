"""Multiplicity benchmarks (issue 16): seconds per epsilon-valid model for each Rashomon
sampler, and the wall time of the multiplicity papers' pipelines.

    python benchmarks/bench_multiplicity.py --profile smoke|full [--skip-papers] [--out PATH]

Part 1 (samplers): one base MLP (2 x 64) per seed on digits; retraining, Bernoulli and
Gaussian dropout and AWP candidates; seconds per candidate and per epsilon-valid candidate
(epsilon on the reference split) and the speed-up of each sampler over retraining.
Part 2 (papers): one Prefect flow run per paper in this process; flow wall time and each
stage's seconds. Results: JSON under benchmarks/results/ and an MLflow run in the
experiment ``reprolab/bench-multiplicity`` (the flows log their own runs too).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

T_START = time.perf_counter()
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness import time_papers  # noqa: E402

PAPERS = ("dropout_rashomon", "predictive_churn", "uncertainty_measures", "oko", "psn_irt")
SIZES = {  # profile -> (seeds, retrain models, per_rate, epochs, max_samples)
    "smoke": (2, 3, 10, 4, 300),
    "full": (5, 20, 100, 30, None),
}


def bench_samplers(profile: str, eps: float = 0.02) -> dict:
    import numpy as np
    import torch

    from models import ModelSpec
    from tasks.data_prep import DataParams, prepare, table_to_tensors
    from tasks.multiplicity import metrics as mm
    from tasks.multiplicity import sampler as sp
    from tasks.train import OptimParams, fit, init_model, num_classes, torch_threads

    seeds, n_retrain, per_rate, epochs, max_samples = SIZES[profile]
    s = prepare(DataParams(dataset="digits", max_samples=max_samples, val_fraction=0.2))
    x_ref, y_ref, _ = table_to_tensors(s["val"])
    x_test, _, _ = table_to_tensors(s["test"])
    spec, optim = ModelSpec(hidden=(64, 64)), OptimParams(max_epochs=epochs)
    per: dict[str, list[dict]] = {m: [] for m in sp.SAMPLERS}
    for b in range(seeds):
        model = init_model(spec, s["train"], num_classes(s["train"], s["val"]), b)
        fit(model, optim, s["train"], s["val"], b)
        model.eval()
        with torch.no_grad():
            base_loss = float(torch.nn.functional.cross_entropy(model(x_ref), y_ref))
        with torch_threads():
            cands = [
                sp.retrain_candidates(spec, optim, s["train"], s["val"], x_test, [1000 + 100 * b + j for j in range(n_retrain)])[0],
                *(sp.dropout_candidates(model, k, np.linspace(0, 0.3, 11).tolist(), per_rate, x_ref, y_ref, x_test, b)
                  for k in ("dropout_bernoulli", "dropout_gaussian")),
                sp.awp_candidates(model, x_ref, y_ref, x_test, 10, 10, 0.05, base_loss + 0.04, b),
            ]
        for c in cands:
            n_valid = int(mm.epsilon_set(c.ref_loss, base_loss, eps).sum())
            total = float(c.seconds.sum())
            per[c.method].append({"candidates": len(c), "valid": n_valid, "seconds": total,
                                  "sec_per_valid": total / n_valid if n_valid else None})
    out = {}
    for m, rows in per.items():
        spv = [r["sec_per_valid"] for r in rows if r["sec_per_valid"]]
        out[m] = {"runs": rows, "sec_per_valid_mean": float(np.mean(spv)) if spv else None,
                  "sec_per_candidate_mean": float(np.mean([r["seconds"] / r["candidates"] for r in rows]))}
    base = out["retrain"]["sec_per_valid_mean"]
    for m in sp.SAMPLERS:
        v = out[m]["sec_per_valid_mean"]
        out[m]["speedup_vs_retrain"] = base / v if (base and v) else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", choices=("smoke", "full"), default="smoke")
    ap.add_argument("--out", default=None)
    ap.add_argument("--skip-papers", action="store_true", help="only the sampler micro-benchmark")
    ap.add_argument("--paper", action="append", default=None, help="subset of the multiplicity papers")
    args = ap.parse_args()
    for k, v in {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                 "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1"}.items():
        os.environ.setdefault(k, v)
    t0 = time.perf_counter()
    samplers = bench_samplers(args.profile)
    samplers_s = time.perf_counter() - t0
    papers = {} if args.skip_papers else time_papers(args.paper or PAPERS, args.profile)
    out = {"profile": args.profile, "samplers": samplers, "samplers_wall_s": samplers_s, "papers": papers,
           "total_wall_s": time.perf_counter() - T_START, "cpus": os.cpu_count(), "machine": platform.machine(),
           "load_avg_1m_at_end": os.getloadavg()[0]}
    path = Path(args.out or ROOT / f"benchmarks/results/multiplicity_{args.profile}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2, sort_keys=True))
    tmp.replace(path)
    from tasks.platform import tracking

    if tracking.enabled():
        import mlflow

        mlflow.set_tracking_uri(tracking.tracking_uri())
        mlflow.set_experiment("reprolab/bench-multiplicity")
        with mlflow.start_run(run_name=f"bench-multiplicity-{args.profile}"):
            mlflow.set_tags({"reprolab.profile": args.profile, **{f"reprolab.{k}": v for k, v in tracking.git_state().items()}})
            for m, v in samplers.items():
                for k in ("sec_per_valid_mean", "sec_per_candidate_mean", "speedup_vs_retrain"):
                    if v[k] is not None:
                        mlflow.log_metric(f"{m}.{k}", v[k])
            for name, v in papers.items():
                mlflow.log_metric(f"{name}.flow_wall_s", v["flow_wall_s"])
            mlflow.log_metric("total_wall_s", out["total_wall_s"])
            mlflow.log_artifact(str(path))
    print(json.dumps({m: v["speedup_vs_retrain"] for m, v in samplers.items()}),
          json.dumps({k: round(v["flow_wall_s"], 1) for k, v in papers.items()}), f"total {out['total_wall_s']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
