"""Flows the served stack runs in tests and benchmarks: a tracked flow and a fan-out grid.

* :func:`tracked_flow` records to the MLflow server given purely by ``MLFLOW_TRACKING_URI`` (the
  worker's environment). It is safe to run twice: the MLflow run is found again by its
  ``reprolab.run_key`` tag, a metric step already logged is not logged again, and the summary
  artifact is rewritten with identical bytes.
* :func:`grid_flow` fans a grid (papers x seeds x methods) out through Prefect's
  ``DaskTaskRunner``. Each cell trains a small deterministic scikit-learn model, CPU-bound, and
  writes its result atomically to ``<out_dir>/<cell>.json``; a cell run twice (a killed Dask
  worker's task is rerun elsewhere) writes the same bytes, so reruns are harmless.

Phase-1 stand-ins until the paper flows of ``flows.papers`` are deployed the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from infra.health import ServiceUnavailable
from tasks.platform.artifacts import atomic_write_bytes, to_json_bytes

# --------------------------------------------------------------------------------------------
# PLATFORM: small helpers


def write_json_atomic(path: Path, obj: object) -> bytes:
    """Write ``obj`` as canonical JSON (sorted keys) atomically; returns the bytes written."""
    data = to_json_bytes(obj)
    atomic_write_bytes(path, data)
    return data


@contextlib.contextmanager
def mlflow_errors() -> Iterator[None]:
    """Turn an unreachable/failed MLflow server into :class:`ServiceUnavailable` naming it."""
    import mlflow
    import requests

    try:
        yield
    except (mlflow.exceptions.MlflowException, requests.exceptions.RequestException) as exc:
        uri = mlflow.get_tracking_uri()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServiceUnavailable(f"MLflow server at {uri} failed: {first[:300]}") from exc


# --------------------------------------------------------------------------------------------
# the tracked flow


def _find_or_create_run(client, experiment: str, run_key: str, params: dict[str, object]) -> str:
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    found = client.search_runs([exp_id], filter_string=f"tags.`reprolab.run_key` = '{run_key}'", max_results=2)
    if found:
        return found[0].info.run_id
    run = client.create_run(exp_id, tags={"reprolab.run_key": run_key, "mlflow.runName": run_key})
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    return run.info.run_id


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def open_run(experiment: str, run_key: str, params: dict[str, object]) -> str:
    """The MLflow run for ``run_key`` (created once; a rerun finds it again)."""
    from mlflow.tracking import MlflowClient

    with mlflow_errors():
        return _find_or_create_run(MlflowClient(), experiment, run_key, params)


def step_loss(lr: float, step: int, seed: int) -> float:
    """Deterministic loss of a tiny least-squares fit after ``step + 1`` gradient steps."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 4))  # (n, d) float64
    w_true = rng.normal(size=4)  # (d,)
    y = x @ w_true
    w = np.zeros(4)
    for _ in range(step + 1):
        w -= lr * 2.0 * x.T @ (x @ w - y) / len(y)
    return float(np.mean((x @ w - y) ** 2))


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def train_step(run_id: str, step: int, lr: float, seed: int, gate: str | None) -> float:
    """Compute and log one step's loss unless that step is already logged (idempotent)."""
    from mlflow.tracking import MlflowClient

    if gate and step > 0:
        _wait_for_gate(Path(gate), timeout=120.0)
    loss = step_loss(lr, step, seed)
    client = MlflowClient()
    with mlflow_errors():
        logged = {m.step for m in client.get_metric_history(run_id, "loss")}
        if step not in logged:
            client.log_metric(run_id, "loss", loss, step=step)
    return loss


def _wait_for_gate(gate: Path, timeout: float) -> None:
    """Test hook: hold the flow between steps until ``gate`` exists (bounded)."""
    deadline = time.monotonic() + timeout
    while not gate.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate file {gate} did not appear within {timeout:g} s")
        time.sleep(0.1)


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def log_summary(run_id: str, summary: dict[str, object]) -> str:
    """Upload ``summary.json`` (same bytes on a rerun) through the MLflow server; returns its SHA-256."""
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        data = write_json_atomic(Path(tmp) / "summary.json", summary)
        with mlflow_errors():
            MlflowClient().log_artifact(run_id, str(Path(tmp) / "summary.json"))
            MlflowClient().set_terminated(run_id, "FINISHED")
    return hashlib.sha256(data).hexdigest()


@flow(name="reprolab-tracked", log_prints=True)
def tracked_flow(run_key: str, steps: int = 3, lr: float = 0.05, seed: int = 0,
                 note: str = "", experiment: str = "reprolab-infra", gate: str | None = None) -> dict:
    """Log ``steps`` losses and a summary artifact to MLflow under one run found by ``run_key``.

    Every parameter is editable from the Prefect UI; the summary artifact echoes them, so a test
    can check that a UI/API-triggered run received exactly the parameters it was given.
    """
    params = {"steps": steps, "lr": lr, "seed": seed, "note": note}
    run_id = open_run(experiment, run_key, params)
    losses = [train_step(run_id, i, lr, seed, gate) for i in range(steps)]
    summary = {"run_key": run_key, "params": params, "losses": losses}
    digest = log_summary(run_id, summary)
    return {"run_id": run_id, "summary": summary, "summary_sha256": digest}


# --------------------------------------------------------------------------------------------
# the grid

# "Papers" of the phase-1 grid: synthetic classification problems of different shapes.
GRID_PROBLEMS: dict[str, dict[str, int]] = {
    "blobs": {"n_samples": 600, "n_features": 16, "n_informative": 8, "n_classes": 4},
    "xor": {"n_samples": 600, "n_features": 8, "n_informative": 4, "n_classes": 2},
}
GRID_METHODS = ("adam", "sgd")  # the optimiser of the 2-hidden-layer MLP


def cell_id(paper: str, seed: int, method: str) -> str:
    return f"{paper}__s{seed}__{method}"


def fit_cell(paper: str, seed: int, method: str, work: int = 1) -> dict[str, object]:
    """Train one grid cell (deterministic, single-threaded) and return its metrics.

    Args:
        paper: key of ``GRID_PROBLEMS``.
        seed: data split + model initialisation seed.
        method: optimiser of the MLP (128-128 hidden units), ``"adam"`` or ``"sgd"``.
        work: epochs = ``100 * work`` (about 0.25 s of one core per unit here), no early stop.

    Returns:
        ``{"cell", "paper", "seed", "method", "accuracy", "weights_sha256"}``; two calls with the
        same arguments return identical dicts (also in another process).
    """
    import warnings

    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    if paper not in GRID_PROBLEMS:
        raise ValueError(f"unknown grid paper {paper!r} (known: {sorted(GRID_PROBLEMS)})")
    if method not in GRID_METHODS:
        raise ValueError(f"unknown grid method {method!r} (known: {list(GRID_METHODS)})")
    if work < 1:
        raise ValueError(f"work must be >= 1, got {work}")
    x, y = make_classification(random_state=seed, **GRID_PROBLEMS[paper])  # (n, d) float64, (n,) int
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=seed)
    model = MLPClassifier(hidden_layer_sizes=(128, 128), solver=method, max_iter=100 * work, tol=0.0,
                          n_iter_no_change=10**6, random_state=seed)
    with threadpool_limits(1), warnings.catch_warnings():  # one core each: bitwise-reproducible, CPU-bound
        warnings.simplefilter("ignore")  # ConvergenceWarning: the epoch budget is fixed on purpose
        model.fit(x_tr, y_tr)
        accuracy = float(model.score(x_te, y_te))
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(c).tobytes() for c in model.coefs_)).hexdigest()
    return {"cell": cell_id(paper, seed, method), "paper": paper, "seed": seed, "method": method,
            "accuracy": accuracy, "weights_sha256": digest}


@task(retries=2, retry_delay_seconds=0.5, cache_policy=NO_CACHE)
def grid_cell(paper: str, seed: int, method: str, out_dir: str, work: int = 1) -> dict[str, object]:
    """One grid cell as a Prefect task: train, then write ``<out_dir>/<cell>.json`` atomically."""
    result = fit_cell(paper, seed, method, work)
    write_json_atomic(Path(out_dir) / f"{result['cell']}.json", result)
    return result


@flow(name="reprolab-grid")
def grid_flow(papers: list[str], seeds: list[int], methods: list[str], out_dir: str,
              work: int = 1) -> list[dict[str, object]]:
    """Submit every (paper, seed, method) cell to the flow's task runner; results in grid order."""
    futures = [grid_cell.submit(p, s, m, out_dir, work) for p in papers for s in seeds for m in methods]
    return [f.result() for f in futures]


LOCAL_CLUSTER_KWARGS: dict[str, object] = {
    # One single-threaded worker *process* per core: a cell is CPU-bound Python + BLAS, so threads
    # would fight over the GIL. Dask's nanny also sets OMP/MKL/OPENBLAS_NUM_THREADS=1 in each
    # worker, so BLAS and torch's intra-op pool use one thread there as well.
    "threads_per_worker": 1, "processes": True, "host": "127.0.0.1", "dashboard_address": None,
}


def dask_task_runner(address: str | None = None, n_workers: int = 2):
    """``DaskTaskRunner`` on ``address`` (any scheduler) or on a fresh loopback ``LocalCluster``."""
    from prefect_dask import DaskTaskRunner

    address = address or os.environ.get("REPROLAB_DASK_ADDRESS") or None
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": n_workers, **LOCAL_CLUSTER_KWARGS})


@contextlib.contextmanager
def dask_scheduler(address: str | None = None, n_workers: int = 2) -> Iterator[str]:
    """The scheduler address to run on, pinned as this thread's current Dask client.

    ``address``, else ``REPROLAB_DASK_ADDRESS``, else a fresh loopback ``LocalCluster`` of
    ``n_workers`` (closed on exit).

    NOTE: ``prefect_dask.DaskTaskRunner`` (0.3.7) asks ``distributed.get_client()`` first and only
    falls back to its ``address`` when no client exists, so with any default ``Client`` open in
    the process (a notebook, a benchmark, another grid) the grid silently ran on *that* cluster.
    Making a client for our scheduler the current one (a context variable, this thread only) makes
    the runner pick the scheduler we were given.
    """
    from distributed import Client, LocalCluster

    address = address or os.environ.get("REPROLAB_DASK_ADDRESS") or None
    with contextlib.ExitStack() as stack:
        if not address:
            cluster = stack.enter_context(LocalCluster(n_workers=n_workers, **LOCAL_CLUSTER_KWARGS))
            address = cluster.scheduler_address
        client = stack.enter_context(Client(address, set_as_default=False))
        stack.enter_context(client.as_current())
        yield address


def run_grid(papers: list[str], seeds: list[int], methods: list[str], out_dir: str | Path, *,
             work: int = 1, address: str | None = None, n_workers: int = 2) -> list[dict[str, object]]:
    """Run :func:`grid_flow` on Dask: on ``address`` (or ``REPROLAB_DASK_ADDRESS``) or on a fresh
    loopback LocalCluster of ``n_workers`` single-threaded worker processes.

    NOTE: Prefect costs about 0.15 s of CPU per cell (measured on the served stack: ~80 ms in the
    Dask worker, which rebuilds a Prefect client and settings for every task run, ~30 ms in the
    Prefect server, ~35 ms in the flow process and scheduler). Cells of a few seconds of CPU
    (``work`` >= 8 here, like any real training run) keep that under 10 % and scale with the
    workers; sub-second cells do not.
    """
    with dask_scheduler(address, n_workers) as scheduler:
        runner = dask_task_runner(scheduler)
        return grid_flow.with_options(task_runner=runner)(papers, seeds, methods, str(out_dir), work)


def run_grid_sequential(papers: list[str], seeds: list[int], methods: list[str],
                        work: int = 1) -> list[dict[str, object]]:
    """The reference: the same cells, one after another, no orchestration."""
    return [fit_cell(p, s, m, work) for p in papers for s in seeds for m in methods]
