"""Wall time of the auditing pipelines (mia_benchmark, dp_audit, text_detection) in one process.

    python benchmarks/bench_audit.py --profile smoke|full [--out benchmarks/results/audit_<profile>.json]

One Prefect flow run per paper, all in this process (one temporary Prefect server), so the
total is what a user of ``make audit-smoke`` waits for. Records, per paper, the flow's wall
time and every stage's compute seconds (from the flow summary; cached stages show ~0), and
the process total including start-up. Results: JSON here and MLflow (each flow's parent run).
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
sys.path.insert(0, str(ROOT))  # run as a script from any directory
PAPERS = ("mia_benchmark", "dp_audit", "text_detection")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", choices=("smoke", "full"), default="smoke")
    ap.add_argument("--out", default=None)
    ap.add_argument("--paper", action="append", default=None, help="subset of the auditing papers")
    args = ap.parse_args()
    for k, v in {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                 "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1"}.items():
        os.environ.setdefault(k, v)
    from flows.papers import get_paper
    from flows.run import build_flow

    t_import = time.perf_counter() - T_START
    results = {}
    for name in args.paper or PAPERS:
        t0 = time.perf_counter()
        summary = build_flow(get_paper(name))(profile=args.profile)
        results[name] = {
            "flow_wall_s": time.perf_counter() - t0,
            "stages_s": {k: v["seconds"] for k, v in summary["stages"].items()},
            "cached": [k for k, v in summary["stages"].items() if v["cached"]],
            "mlflow_run_id": summary.get("mlflow_run_id"),
        }
    out = {
        "profile": args.profile,
        "papers": results,
        "import_s": t_import,
        "total_wall_s": time.perf_counter() - T_START,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "load_avg_1m_at_end": os.getloadavg()[0],
    }
    path = Path(args.out or ROOT / f"benchmarks/results/audit_{args.profile}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2, sort_keys=True))
    tmp.replace(path)
    print(json.dumps({k: round(v["flow_wall_s"], 1) for k, v in results.items()}), f"total {out['total_wall_s']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
