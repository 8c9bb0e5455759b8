"""Dask fan-out: a papers x seeds x methods grid through Prefect's DaskTaskRunner on 2 workers."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

from infra.workloads import cell_id, fit_cell, run_grid, run_grid_sequential
from tests.infra.infra_helpers import Stack, wait_for


PAPERS, SEEDS, METHODS = ["blobs", "xor"], [0, 1], ["adam", "sgd"]  # 8 runs


@pytest.fixture(scope="module")
def sequential() -> list[dict]:
    return run_grid_sequential(PAPERS, SEEDS, METHODS)


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as lc, Client(lc) as client:
        yield lc, client


def test_fit_cell_is_deterministic_and_validates(sequential) -> None:
    by_cell = {r["cell"]: r for r in sequential}
    assert fit_cell("xor", 1, "sgd") == by_cell[cell_id("xor", 1, "sgd")]  # same bytes in a fresh call
    assert by_cell[cell_id("xor", 0, "sgd")]["weights_sha256"] != by_cell[cell_id("xor", 1, "sgd")]["weights_sha256"]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in sequential)
    with pytest.raises(ValueError, match="unknown grid paper 'nope'"):
        fit_cell("nope", 0, "adam")
    with pytest.raises(ValueError, match="unknown grid method 'lbfgs'"):
        fit_cell("xor", 0, "lbfgs")


@pytest.mark.infra
def test_grid_on_two_dask_workers_matches_sequential(stack: Stack, cluster, sequential, tmp_path: Path) -> None:
    lc, client = cluster
    assert len(client.scheduler_info()["workers"]) == 2
    results = run_grid(PAPERS, SEEDS, METHODS, tmp_path, address=lc.scheduler_address)
    assert len(results) == 8
    assert results == sequential
    # Both workers took part.
    ran_on = client.run(lambda: os.getpid())
    assert len(ran_on) == 2
    files = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert files == {r["cell"]: r for r in sequential}


@pytest.mark.infra
def test_grid_runs_on_the_given_scheduler_even_with_another_default_client(stack: Stack, cluster, sequential,
                                                                            tmp_path: Path) -> None:
    # prefect_dask 0.3.7 asks distributed.get_client() before its address: with another default
    # Client open in the process the grid used to run on that client's cluster instead.
    from distributed import Client, LocalCluster, get_task_stream

    lc, client = cluster
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as other_lc, Client(other_lc) as other:
        assert Client.current() is other  # the newest default client is the *other* cluster's
        with get_task_stream(client) as ours, get_task_stream(other) as theirs:
            results = run_grid(["xor"], [1], ["sgd"], tmp_path, address=lc.scheduler_address)
    assert results == [r for r in sequential if r["cell"] == cell_id("xor", 1, "sgd")]
    assert len(theirs.data) == 0
    assert len(ours.data) == 1


@pytest.mark.infra
def test_worker_killed_mid_grid_loses_nothing(stack: Stack, cluster, sequential, tmp_path: Path) -> None:
    lc, client = cluster
    pids = client.run(lambda: os.getpid())  # {worker address: pid}
    victim_addr, victim_pid = sorted(pids.items())[0]
    snapshot: dict[str, bytes] = {}
    killed = threading.Event()

    def killer() -> None:
        # Kill one worker process once the first cell has completed and others are in flight.
        wait_for(lambda: len(list(tmp_path.glob("*.json"))) >= 1, timeout=120, what="first grid cells")
        for p in tmp_path.glob("*.json"):
            snapshot[p.name] = p.read_bytes()
        os.kill(victim_pid, signal.SIGKILL)
        killed.set()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    results = run_grid(PAPERS, SEEDS, METHODS, tmp_path, address=lc.scheduler_address)
    thread.join(timeout=5)
    assert killed.is_set(), "the worker was never killed: grid finished before a cell was done?"
    assert len(snapshot) < 8, "the kill landed after the whole grid had finished"
    assert results == sequential
    # Completed runs are intact (same bytes), and every cell has exactly one result file.
    for name, data in snapshot.items():
        assert (tmp_path / name).read_bytes() == data
    assert sorted(p.stem for p in tmp_path.glob("*.json")) == sorted(
        cell_id(p, s, m) for p in PAPERS for s in SEEDS for m in METHODS)
    # The nanny restarted the killed worker: the cluster is back to 2 workers.
    wait_for(lambda: len(client.scheduler_info()["workers"]) == 2, timeout=60, what="the killed worker's restart")
    assert victim_pid not in client.run(lambda: os.getpid()).values()
    del victim_addr
