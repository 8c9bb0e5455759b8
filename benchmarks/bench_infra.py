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

Usage: ``python benchmarks/bench_infra.py [--repeats 3] [--work 8] [--tasks 60] [--grid-only]``
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
from infra.workloads import LOCAL_CLUSTER_KWARGS, run_grid, write_json_atomic  # noqa: E402

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


ARMS = (("prefect", 1), ("prefect", 2), ("dask", 1), ("dask", 2))


def _cpu_seconds() -> float:
    """User + system CPU seconds of the calling process (all its threads); runs inside a worker."""
    t = os.times()
    return t.user + t.system


def _tree_cpu_seconds(pid: int | None) -> float | None:
    """CPU seconds of ``pid`` and its children (the Prefect server, PostgreSQL), or None."""
    if pid is None:
        return None
    import psutil

    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def grid_runs(repeats: int, work: int, server_pids: dict[str, int]) -> list[dict[str, object]]:
    """Every arm (Prefect or plain Dask, 1 or 2 workers) ``repeats`` times, interleaved.

    Both clusters live for the whole measurement, so no arm pays a cluster start. Each repeat runs
    the four arms in a rotated order (reversed on odd repeats), so a change in the shared machine's
    background load hits every arm alike instead of one phase. Per run it records the wall time,
    the CPU seconds the Dask workers used (``worker_cpu_s``; divided by the wall time: the cores
    the arm actually got), the CPU of the Prefect server and PostgreSQL trees, and the load average.
    """
    from distributed import Client, LocalCluster

    from infra.workloads import fit_cell

    cells = [(p, s, m) for p in PAPERS for s in SEEDS for m in METHODS]
    args = [list(col) for col in zip(*cells)] + [[work] * len(cells)]
    runs: list[dict[str, object]] = []
    with LocalCluster(n_workers=1, **LOCAL_CLUSTER_KWARGS) as lc1, \
            LocalCluster(n_workers=2, **LOCAL_CLUSTER_KWARGS) as lc2, \
            Client(lc1, set_as_default=False) as c1, Client(lc2, set_as_default=False) as c2, \
            tempfile.TemporaryDirectory() as tmp:
        clusters = {1: (lc1, c1), 2: (lc2, c2)}

        def run_arm(engine: str, n_workers: int) -> None:
            lc, client = clusters[n_workers]
            if engine == "prefect":
                run_grid(PAPERS, SEEDS, METHODS, tmp, work=work, address=lc.scheduler_address)
            else:
                client.gather(client.map(fit_cell, *args, pure=False))

        for arm in ARMS:  # warm-up: imports in the workers, flow/task registration on the server
            run_arm(*arm)
        for rep in range(repeats):
            k = rep % len(ARMS)
            order = list(ARMS[k:] + ARMS[:k])
            if rep % 2:
                order.reverse()
            for engine, n_workers in order:
                client = clusters[n_workers][1]
                load = os.getloadavg()
                cpu0 = sum(client.run(_cpu_seconds).values())
                srv0 = {k: _tree_cpu_seconds(p) for k, p in server_pids.items()}
                t0 = time.perf_counter()
                run_arm(engine, n_workers)
                seconds = time.perf_counter() - t0
                cpu1 = sum(client.run(_cpu_seconds).values())
                srv1 = {k: _tree_cpu_seconds(p) for k, p in server_pids.items()}
                runs.append({
                    "engine": engine, "workers": n_workers, "repeat": rep, "seconds": seconds,
                    "worker_cpu_s": cpu1 - cpu0, "cores_obtained": (cpu1 - cpu0) / seconds,
                    **{f"{k}_cpu_s": (srv1[k] - srv0[k]) if srv0[k] is not None and srv1[k] is not None else None
                       for k in server_pids},
                    "loadavg_1m_before": load[0],
                })
                print(f"  {engine:7s} {n_workers} worker(s) rep {rep}: {seconds:6.2f} s, "
                      f"workers {cpu1 - cpu0:5.2f} CPU s, load {load[0]:.2f}", flush=True)
    return runs


def summarise_grid(runs: list[dict[str, object]], engine: str, n_cells: int) -> dict[str, object]:
    """Medians per worker count, the 2-vs-1 ratio of the medians and of each repeat's pair."""
    def sel(n: int) -> list[dict[str, object]]:
        return sorted((r for r in runs if r["engine"] == engine and r["workers"] == n), key=lambda r: r["repeat"])

    one, two = sel(1), sel(2)
    med = {n: statistics.median(r["seconds"] for r in rs) for n, rs in ((1, one), (2, two))}
    out: dict[str, object] = {
        "seconds_1_worker": [r["seconds"] for r in one], "seconds_2_workers": [r["seconds"] for r in two],
        "median_s_1_worker": med[1], "median_s_2_workers": med[2],
        "throughput_cells_per_s_1_worker": n_cells / med[1], "throughput_cells_per_s_2_workers": n_cells / med[2],
        "speedup_2_vs_1": med[1] / med[2],
        "paired_speedups": [a["seconds"] / b["seconds"] for a, b in zip(one, two)],
        "worker_cpu_s_per_cell": statistics.median(r["worker_cpu_s"] for r in one + two) / n_cells,
        "cores_obtained_median_1_worker": statistics.median(r["cores_obtained"] for r in one),
        "cores_obtained_median_2_workers": statistics.median(r["cores_obtained"] for r in two),
        "loadavg_1m_median": statistics.median(r["loadavg_1m_before"] for r in one + two),
    }
    for key, name in (("prefect_cpu_s", "prefect_server_cpu_s_per_cell"), ("postgres_cpu_s", "postgres_cpu_s_per_cell")):
        vals = [r[key] for r in one + two if r.get(key) is not None]
        if vals:
            out[name] = statistics.median(vals) / n_cells
    return out


def overhead_ms(env: dict[str, str], n_tasks: int, repeats: int) -> list[float]:
    """Per-task wall times (ms) of ``repeats`` flows of ``n_tasks`` no-op tasks, in a child process."""
    res = subprocess.run([sys.executable, "-c", OVERHEAD_CHILD, str(n_tasks), str(repeats)], env=env,
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if res.returncode != 0 or line is None:
        raise RuntimeError(f"overhead child failed (exit {res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    return json.loads(line.removeprefix("RESULT "))


def measure_overhead(env: dict[str, str], n_tasks: int, repeats: int) -> dict[str, object]:
    """Per-task orchestration overhead, served (Prefect server on PostgreSQL) vs embedded."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    base.update(QUIET_ENV)
    with tempfile.TemporaryDirectory() as home_served, tempfile.TemporaryDirectory() as home_embedded:
        served = overhead_ms({**base, "PREFECT_HOME": home_served, "PREFECT_API_URL": env["PREFECT_API_URL"],
                              **{k: v for k, v in env.items() if k == "PREFECT_API_AUTH_STRING"}},
                             n_tasks, repeats)
        embedded = overhead_ms({**base, "PREFECT_HOME": home_embedded,
                                "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
                                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}, n_tasks, repeats)
    return {
        "measured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tasks_per_flow": n_tasks, "flows": repeats,
        "served_median_ms_per_task": statistics.median(served),
        "embedded_median_ms_per_task": statistics.median(embedded),
        "served_p90_ms": statistics.quantiles(served, n=10)[-1],
        "embedded_p90_ms": statistics.quantiles(embedded, n=10)[-1],
        "served_over_embedded": statistics.median(served) / statistics.median(embedded),
        "served": "Prefect server on PostgreSQL (loopback)",
        "embedded": "Prefect ephemeral server on SQLite (no PREFECT_API_URL)",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=int, default=8,
                        help="epochs/100 per grid cell (about 0.25 s of one core per unit; 8 = about 2 s)")
    parser.add_argument("--tasks", type=int, default=60, help="no-op tasks per flow for the overhead")
    parser.add_argument("--grid-only", action="store_true",
                        help="measure only the grid; keep the orchestration-overhead section of the existing JSON")
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
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        server_pids = {name: state.procs[name].pid for name in ("prefect", "postgres") if name in state.procs}
        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"],
                                         PREFECT_API_AUTH_STRING: env.get("PREFECT_API_AUTH_STRING")}):
            runs = grid_runs(args.repeats, args.work, server_pids)
        n_cells = len(PAPERS) * len(SEEDS) * len(METHODS)
        prefect_grid = summarise_grid(runs, "prefect", n_cells)
        dask_grid = summarise_grid(runs, "dask", n_cells)

        previous = json.loads(OUT.read_text()) if OUT.exists() else {}
        if args.grid_only and "orchestration_overhead" in previous:
            overhead = previous["orchestration_overhead"]
            overhead.setdefault("measured_utc", previous.get("when_utc"))
        else:
            overhead = measure_overhead(env, args.tasks, args.repeats)

        result = {
            "benchmark": "infra",
            "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        # NOTE: the machine is shared; a load average above the core count means other
                        # processes competed for the cores and the 1-vs-2-worker ratio understates scaling.
                        "loadavg_1_5_15_before": list(load_before), "loadavg_1_5_15_after": list(os.getloadavg())},
            "grid": {
                "what": "Prefect DaskTaskRunner (infra.workloads.run_grid), arms interleaved with grid_dask_only",
                "cells": n_cells, "papers": PAPERS, "seeds": SEEDS, "methods": METHODS, "work": args.work,
                "repeats": args.repeats, **prefect_grid, "goal_speedup": 1.7,
                "prefect_worker_overhead_cpu_s_per_cell": prefect_grid["worker_cpu_s_per_cell"]
                - dask_grid["worker_cpu_s_per_cell"],
            },
            "grid_dask_only": {
                "what": "same cells via distributed.Client.map, no Prefect (engine-only scaling)", **dask_grid,
            },
            "grid_runs": runs,
            "orchestration_overhead": overhead,
        }
        write_json_atomic(OUT, result)

        import mlflow

        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        mlflow.set_experiment("reprolab-bench")
        with mlflow.start_run(run_name="bench-infra"):
            mlflow.log_params({"work": args.work, "repeats": args.repeats, "tasks": args.tasks, "cells": n_cells})
            mlflow.log_metrics({
                "grid_speedup_2_vs_1": prefect_grid["speedup_2_vs_1"],
                "grid_throughput_1": prefect_grid["throughput_cells_per_s_1_worker"],
                "grid_throughput_2": prefect_grid["throughput_cells_per_s_2_workers"],
                "dask_only_speedup_2_vs_1": dask_grid["speedup_2_vs_1"],
                "served_ms_per_task": overhead["served_median_ms_per_task"],
                "embedded_ms_per_task": overhead["embedded_median_ms_per_task"],
            })
            mlflow.log_artifact(str(OUT))
        keys = ("median_s_1_worker", "median_s_2_workers", "speedup_2_vs_1", "paired_speedups",
                "cores_obtained_median_1_worker", "cores_obtained_median_2_workers", "loadavg_1m_median")
        print(json.dumps({"grid": {k: prefect_grid[k] for k in keys},
                          "grid_dask_only": {k: dask_grid[k] for k in keys},
                          "orchestration_overhead": overhead}, indent=2))
        print(f"wrote {OUT}")
    finally:
        if started_here:
            down(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
