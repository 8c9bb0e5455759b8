"""What every kernel benchmark shares (``bench_kernels`` for N:M, ``bench_quant`` for low-bit): the
machine's name, the side-by-side timing loop, the results path, the atomic JSON write and the MLflow
run in experiment ``bench-kernels``.

Timing: the callables are interleaved within every repeat, so all see the same machine load; each
call records wall time and process CPU time (which a preempting neighbour does not inflate).
"""

from __future__ import annotations

import json
import os
import platform
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "bench-kernels"

for _key, _val in (("DO_NOT_TRACK", "1"), ("MLFLOW_DISABLE_TELEMETRY", "true")):
    os.environ.setdefault(_key, _val)


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model name with the core count (``/proc/cpuinfo``)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return f"{platform.processor() or 'cpu'} x{os.cpu_count()}"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def interleaved(fns: Mapping[str, Callable[[], object]], repeats: int,
                sync: Callable[[], None] = lambda: None) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(wall seconds, process CPU seconds) of each fn per repeat, the fns interleaved within every
    repeat; ``sync`` runs around each call (a CUDA synchronize). No warm-up: the caller does it."""
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            sync()
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            sync()
            wall[key].append(time.perf_counter() - t0)
            cpu[key].append(time.process_time() - c0)
    return wall, cpu


def results_path(kind: str, device: str, profile: str, extra: Iterable[str] = ()) -> Path:
    """``benchmarks/results/<kind>_<device>[_<profile>][_<extra>...].json`` (``quick`` is the default profile)."""
    parts = [f"{kind}_{slug(device)}", *([] if profile == "quick" else [profile]), *extra]
    return ROOT / "benchmarks" / "results" / ("_".join(parts) + ".json")


def write_json_atomic(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def log_mlflow(records: list[dict], json_path: Path, run_name: str, tags: Mapping[str, str],
               key: Callable[[dict], str], metrics: Iterable[str]) -> None:
    """One MLflow run in ``bench-kernels``: params (tags + threads), ``<metric>/<key(record)>`` per
    record and metric, and the JSON as an artifact."""
    import mlflow

    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{ROOT / 'mlflow.db'}"))
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(EXPERIMENT)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        EXPERIMENT, artifact_location=(ROOT / "mlartifacts" / EXPERIMENT).as_uri())
    run = client.create_run(exp_id, run_name=f"{run_name}-t{torch.get_num_threads()}", tags=dict(tags))
    rid = run.info.run_id
    for name, val in {**tags, "threads": torch.get_num_threads()}.items():
        client.log_param(rid, name, val)
    metrics = list(metrics)
    for r in records:
        for name in metrics:
            client.log_metric(rid, f"{name}/{key(r)}", r[name])
    client.log_artifact(rid, str(json_path))
    client.set_terminated(rid)


def finish(payload: dict, out_path: Path, log: Callable[[], None] | None) -> int:
    """Write the results JSON (atomic), say where, then log to MLflow unless ``log`` is None."""
    write_json_atomic(out_path, payload)
    print(f"wrote {len(payload['records'])} records to {out_path} in {payload['wall_s']:.0f} s")
    if log is not None:
        log()
    return 0


def _cpu_seconds() -> float:
    """CPU seconds of this process and its waited-for children (seed workers, native builds)."""
    import resource

    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def time_papers(names: Iterable[str], profile: str) -> dict[str, dict]:
    """Run each paper's Prefect flow (``profile``) in turn: wall and CPU seconds, per-stage seconds, which
    stages were cached or reused from the store, the 1-minute load average before and after, the report's
    verdicts (``claims.json`` next to the published report) and the MLflow parent run."""
    from flows.papers import get_paper
    from flows.run import build_flow

    out = {}
    for name in names:
        load0, c0, t0 = os.getloadavg()[0], _cpu_seconds(), time.perf_counter()
        summary = build_flow(get_paper(name))(profile=profile)
        rec = {"flow_wall_s": time.perf_counter() - t0, "flow_cpu_s": _cpu_seconds() - c0,
               "load_avg_1m": [load0, os.getloadavg()[0]],
               "stages_s": {k: v["seconds"] for k, v in summary["stages"].items()},
               "cached": [k for k, v in summary["stages"].items() if v["cached"]],
               "reused": [k for k, v in summary["stages"].items() if v["reused"] and not v["cached"]],
               "mlflow_run_id": summary.get("mlflow_run_id")}
        claims = Path(summary["report"]).with_name("claims.json") if summary.get("report") else None
        if claims is not None and claims.is_file():
            rec["verdicts"] = {c["claim"]: c["verdict"] for c in json.loads(claims.read_text())["claims"]}
        out[name] = rec
    return out


def peer_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed version of each peer distribution (``"not installed"`` where it is missing)."""
    import importlib.metadata as md

    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out
