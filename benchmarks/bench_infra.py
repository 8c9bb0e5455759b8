"""Benchmark the served stack: Dask grid throughput (1 vs 2 workers) and per-task orchestration overhead.

* Grid throughput: the same papers x seeds x methods grid of CPU-bound cells
  (``infra.workloads.fit_cell``) through ``DaskTaskRunner`` on a loopback ``LocalCluster`` with 1
  and with 2 single-threaded worker processes, side by side, median wall time over repeats (after
  one warm-up run per cluster). Ratio = throughput(2) / throughput(1). The same cells through plain
  ``Client.map`` (no Prefect) separate the engine's scaling from Prefect's per-task cost.
* Orchestration overhead: median wall time of one no-op Prefect task call inside a flow, with the
  flow reporting to the served Prefect server (PostgreSQL) vs the embedded default (no
  ``PREFECT_API_URL``: Prefect's ephemeral local server on SQLite). Each path runs in its own
  process.

Writes ``benchmarks/results/infra.json`` (atomically) and logs the numbers to the stack's MLflow.
Uses the configured stack (``REPROLAB_*``); starts it if it is not up and stops it afterwards.

Usage: ``python benchmarks/bench_infra.py [--repeats 3] [--work 2] [--tasks 60]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra.config import QUIET_ENV, load_config  # noqa: E402
from infra.stack import StackState, client_env, down, is_running, up  # noqa: E402
from infra.workloads import run_grid, write_json_atomic  # noqa: E402

PAPERS, SEEDS, METHODS = ["blobs", "xor"], [0, 1], ["adam", "sgd"]
OUT = ROOT / "benchmarks" / "results" / "infra.json"

OVERHEAD_CHILD = r"""
import json, statistics, sys, time
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

@task(cache_policy=NO_CACHE, persist_result=False)
def noop(i: int) -> int:
    return i

@flow(persist_result=False)
def many(n: int) -> list[float]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        noop(i)
        times.append((time.perf_counter() - t0) * 1e3)
    return times

many(3)  # warm-up: server start (embedded), flow/task registration
samples = []
for _ in range(int(sys.argv[2])):
    samples += many(int(sys.argv[1]))
print("RESULT " + json.dumps(samples))
"""


def grid_seconds(n_workers: int, repeats: int, work: int) -> list[float]:
    """Wall times of the grid on a fresh LocalCluster with ``n_workers`` (after one warm-up run)."""
    from distributed import LocalCluster

    times = []
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, tempfile.TemporaryDirectory() as tmp:
        run_grid(PAPERS, SEEDS, METHODS, tmp, work=work, address=cluster.scheduler_address)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            run_grid(PAPERS, SEEDS, METHODS, tmp, work=work, address=cluster.scheduler_address)
            times.append(time.perf_counter() - t0)
    return times


def raw_dask_seconds(n_workers: int, repeats: int, work: int) -> list[float]:
    """The same cells through plain ``Client.map`` (no Prefect): what the Dask engine alone scales to."""
    from distributed import Client, LocalCluster

    from infra.workloads import fit_cell

    cells = [(p, s, m) for p in PAPERS for s in SEEDS for m in METHODS]
    args = [list(col) for col in zip(*cells)] + [[work] * len(cells)]
    times = []
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.gather(client.map(fit_cell, *args, pure=False))  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            client.gather(client.map(fit_cell, *args, pure=False))
            times.append(time.perf_counter() - t0)
    return times


def overhead_ms(env: dict[str, str], n_tasks: int, repeats: int) -> list[float]:
    """Per-task wall times (ms) of ``repeats`` flows of ``n_tasks`` no-op tasks, in a child process."""
    res = subprocess.run([sys.executable, "-c", OVERHEAD_CHILD, str(n_tasks), str(repeats)], env=env,
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if res.returncode != 0 or line is None:
        raise RuntimeError(f"overhead child failed (exit {res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    return json.loads(line.removeprefix("RESULT "))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=int, default=2, help="epochs/100 per grid cell (~0.5 s of CPU per unit)")
    parser.add_argument("--tasks", type=int, default=60, help="no-op tasks per flow for the overhead")
    args = parser.parse_args()

    load_before = os.getloadavg()
    cfg = load_config()
    before = StackState.load(cfg)
    was_up = bool(before.procs) and all(is_running(p) for p in before.procs.values())
    state = up(cfg)
    started_here = not was_up
    try:
        env = client_env(cfg, state)
        os.environ.update(env)
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
            t1 = grid_seconds(1, args.repeats, args.work)
            t2 = grid_seconds(2, args.repeats, args.work)
        r1 = raw_dask_seconds(1, args.repeats, args.work)
        r2 = raw_dask_seconds(2, args.repeats, args.work)
        n_cells = len(PAPERS) * len(SEEDS) * len(METHODS)
        thr1, thr2 = n_cells / statistics.median(t1), n_cells / statistics.median(t2)

        base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
        base.update(QUIET_ENV)
        with tempfile.TemporaryDirectory() as home_served, tempfile.TemporaryDirectory() as home_embedded:
            served = overhead_ms({**base, "PREFECT_HOME": home_served, "PREFECT_API_URL": env["PREFECT_API_URL"]},
                                 args.tasks, args.repeats)
            embedded = overhead_ms({**base, "PREFECT_HOME": home_embedded,
                                    "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
                                    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}, args.tasks, args.repeats)

        result = {
            "benchmark": "infra",
            "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        # NOTE: the machine is shared; a load average above the core count means other
                        # processes competed for the cores and the 1-vs-2-worker ratio understates scaling.
                        "loadavg_1_5_15_before": list(load_before), "loadavg_1_5_15_after": list(os.getloadavg())},
            "grid": {
                "cells": n_cells, "papers": PAPERS, "seeds": SEEDS, "methods": METHODS, "work": args.work,
                "repeats": args.repeats, "seconds_1_worker": t1, "seconds_2_workers": t2,
                "median_s_1_worker": statistics.median(t1), "median_s_2_workers": statistics.median(t2),
                "throughput_cells_per_s_1_worker": thr1, "throughput_cells_per_s_2_workers": thr2,
                "speedup_2_vs_1": thr2 / thr1, "goal_speedup": 1.7,
                "prefect_overhead_s_per_cell_1_worker": (statistics.median(t1) - statistics.median(r1)) / n_cells,
            },
            "grid_dask_only": {
                "what": "same cells via distributed.Client.map, no Prefect (engine-only scaling)",
                "seconds_1_worker": r1, "seconds_2_workers": r2,
                "median_s_1_worker": statistics.median(r1), "median_s_2_workers": statistics.median(r2),
                "speedup_2_vs_1": statistics.median(r1) / statistics.median(r2),
            },
            "orchestration_overhead": {
                "tasks_per_flow": args.tasks, "flows": args.repeats,
                "served_median_ms_per_task": statistics.median(served),
                "embedded_median_ms_per_task": statistics.median(embedded),
                "served_p90_ms": statistics.quantiles(served, n=10)[-1],
                "embedded_p90_ms": statistics.quantiles(embedded, n=10)[-1],
                "served_over_embedded": statistics.median(served) / statistics.median(embedded),
                "served": "Prefect server on PostgreSQL (loopback)",
                "embedded": "Prefect ephemeral server on SQLite (no PREFECT_API_URL)",
            },
        }
        write_json_atomic(OUT, result)

        import mlflow

        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        mlflow.set_experiment("reprolab-bench")
        with mlflow.start_run(run_name="bench-infra"):
            mlflow.log_params({"work": args.work, "repeats": args.repeats, "tasks": args.tasks, "cells": n_cells})
            mlflow.log_metrics({
                "grid_speedup_2_vs_1": result["grid"]["speedup_2_vs_1"],
                "grid_throughput_1": thr1, "grid_throughput_2": thr2,
                "dask_only_speedup_2_vs_1": result["grid_dask_only"]["speedup_2_vs_1"],
                "served_ms_per_task": result["orchestration_overhead"]["served_median_ms_per_task"],
                "embedded_ms_per_task": result["orchestration_overhead"]["embedded_median_ms_per_task"],
            })
            mlflow.log_artifact(str(OUT))
        print(json.dumps({"grid": {k: result["grid"][k] for k in ("median_s_1_worker", "median_s_2_workers",
                                                                  "speedup_2_vs_1")},
                          "grid_dask_only": result["grid_dask_only"],
                          "orchestration_overhead": result["orchestration_overhead"]}, indent=2))
        print(f"wrote {OUT}")
    finally:
        if started_here:
            down(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
