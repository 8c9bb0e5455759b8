"""Fixtures for the served-deployment and browser tests: a real Prefect server on 127.0.0.1 (free
port, its own PREFECT_HOME) and the real deployments served by ``python -m flows serve`` (what
``make serve`` runs), once per test session. Every process is started in its own session and
killed by process group in ``finally``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tasks.platform.params import ROOT

# The cheapest papers on the smoke profile (flow time measured in one process, idle-ish 2-core box):
# text_detection 3.1 s (2 stages), the cheapest; dp_audit 8.2 s, the cheapest whose report has a
# plot (the browser test checks the report's images). pld 32 s, nm_sparsity 15-35 s.
SERVED_PAPERS = ("text_detection", "dp_audit")
STARTUP_S = 240  # a server or the `serve` process importing every paper, on a loaded 2-core box


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "served: starts a Prefect server and `python -m flows serve` on 127.0.0.1")
    config.addinivalue_line("markers", "browser: drives Debian's chromium through Playwright (`make browser-deps`)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start ``cmd`` in the repo root, in its own process group, output to ``log``."""
    with open(log, "w") as fh:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen | None) -> None:
    """Kill ``proc``'s process group (the server's or runner's children too) and reap it."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, 9)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def tail(log: Path, n: int = 4000) -> str:
    return log.read_text(errors="replace")[-n:] if log.exists() else f"({log} not written)"


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = STARTUP_S) -> None:
    """Poll ``url`` until it answers 200; fail with the log's tail if ``proc`` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, f"{proc.args[:3]} exited with {proc.returncode}:\n{tail(log)}"
        assert time.monotonic() < deadline, f"{url} not up after {timeout} s:\n{tail(log)}"
        time.sleep(0.5)


@dataclass
class PrefectServer:
    url: str  # the UI
    api: str  # PREFECT_API_URL
    env: dict[str, str]  # environment for clients of this server (and the processes they start)
    logs: Path


@dataclass
class Served:
    server: PrefectServer
    deployments: dict[str, dict]  # {paper: the API's deployment object of ``<paper>-nightly``}


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """``prefect server start`` on 127.0.0.1, a free port, its own PREFECT_HOME."""
    logs = tmp_path_factory.mktemp("prefect-server")
    (logs / "home").mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PREFECT_HOME=str(logs / "home"), PREFECT_API_URL=f"{url}/api",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               PREFECT_RUNNER_POLL_FREQUENCY="2")
    prefect = str(Path(sys.executable).parent / "prefect")
    server = start([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                   logs / "server.log", env)
    try:
        wait_http(f"{url}/api/health", server, logs / "server.log")
        yield PrefectServer(url=url, api=f"{url}/api", env=env, logs=logs)
    finally:
        stop(server)


@pytest.fixture(scope="session")
def served(prefect_server: PrefectServer) -> Iterator[Served]:
    """``python -m flows serve --paper P ...`` (SERVED_PAPERS) against ``prefect_server``: the real deployments."""
    log = prefect_server.logs / "serve.log"
    args = [a for p in SERVED_PAPERS for a in ("--paper", p)]
    proc = start([sys.executable, "-m", "flows", "serve", *args], log, prefect_server.env)
    try:
        deadline = time.monotonic() + STARTUP_S
        names = [f"{p}-nightly" for p in SERVED_PAPERS]
        while True:
            r = httpx.post(f"{prefect_server.api}/deployments/filter",
                           json={"deployments": {"name": {"any_": names}}}, timeout=10)
            r.raise_for_status()
            if len(r.json()) == len(names):
                break
            assert proc.poll() is None, f"`python -m flows serve` exited with {proc.returncode}:\n{tail(log)}"
            assert time.monotonic() < deadline, f"deployments {names} not registered after {STARTUP_S} s:\n{tail(log)}"
            time.sleep(1)
        deps = {d["name"].removesuffix("-nightly"): d for d in r.json()}
        yield Served(server=prefect_server, deployments=deps)
        assert proc.poll() is None, f"`python -m flows serve` died during the tests:\n{tail(log)}"
    finally:
        stop(proc)


def create_run(served: Served, paper: str, parameters: dict) -> dict:
    """Trigger a run of ``paper``'s served deployment through the API (as `prefect deployment run` does)."""
    r = httpx.post(f"{served.server.api}/deployments/{served.deployments[paper]['id']}/create_flow_run",
                   json={"parameters": parameters}, timeout=30)
    r.raise_for_status()
    return r.json()


def wait_final(served: Served, flow_run_id: str, timeout: float = 300) -> dict:
    """Poll the flow run until its state is final; fail with the serve log if it is not in time."""
    deadline = time.monotonic() + timeout
    while True:
        run = httpx.get(f"{served.server.api}/flow_runs/{flow_run_id}", timeout=10).json()
        if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run
        assert time.monotonic() < deadline, (
            f"flow run {flow_run_id} still {run['state']['name']} after {timeout} s:\n"
            f"{tail(served.server.logs / 'serve.log')}")
        time.sleep(1)
