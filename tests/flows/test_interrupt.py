"""Ctrl-C / SIGTERM of ``python -m flows run`` (what ``make run`` calls), as a user sends them.

One smoke pipeline, three runs against this project's running Prefect server (so the test
also covers "``make run`` uses the project's server"): SIGINT while a stage runs, SIGTERM
while a later stage runs, then a run to the end that reuses what the interrupted ones
finished. Each interrupted run must exit 130/143 promptly with one line naming the stage and
no traceback, and leave its Prefect runs Crashed and its MLflow run KILLED, not running.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows import local

ROOT = Path(__file__).resolve().parents[2]
PAPER = "nm_sparsity"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """An isolated project home with its own running Prefect server (as ``make ui`` starts)."""
    home = tmp_path_factory.mktemp("interrupt-home")
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    env.update({
        "REPROLAB_HOME": str(home), "REPROLAB_REPORTS": str(home / "reports"),
        "REPROLAB_MLARTIFACTS": str(home / "mlartifacts"), "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "PREFECT_LOCAL_STORAGE_PATH": str(home / "prefect-results"), "PYTHONUNBUFFERED": "1",
        "REPROLAB_PROGRESS_SECONDS": "0",
    })
    server = subprocess.Popen([sys.executable, "-m", "flows.server", "--port", str(local.free_port()), "--no-ui"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    state = home / "prefect" / local.STATE_FILE
    try:
        deadline = time.monotonic() + 180
        while not (state.exists() and local.healthy(_api(state), 1.0)):
            assert server.poll() is None and time.monotonic() < deadline, "project server did not start"
            time.sleep(0.3)
        yield home, env
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def _api(state: Path) -> str:
    import json

    return json.loads(state.read_text())["api_url"]


def _run_until(env: dict, pattern: str, sig: signal.Signals | None, log: Path):
    """Start a smoke run in its own process group; send ``sig`` to the group when ``pattern``
    shows in its output. Returns ``(exit status, stdout+stderr)``."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flows", "run", "--paper", PAPER, "--profile", "smoke"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if sig is not None:
                deadline = time.monotonic() + 400
                while not re.search(pattern, log.read_text(errors="replace")):
                    assert proc.poll() is None, f"run ended before {pattern!r}:\n{log.read_text()}"
                    assert time.monotonic() < deadline, f"no {pattern!r} in time"
                    time.sleep(0.1)
                os.killpg(proc.pid, sig)
                # generous bound for a loaded CI box; the design target is < 10 s (flows/interrupt.py)
                code = proc.wait(timeout=60)
            else:
                code = proc.wait(timeout=900)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return code, log.read_text(errors="replace")


def _after(text: str, marker: str) -> str:
    return text[text.index(marker):]


def test_interrupted_runs_stop_cleanly_and_resume(project, tmp_path):
    home, env = project

    code, text = _run_until(env, r"stage 2/\d+ train_digits", signal.SIGINT, tmp_path / "int.log")
    assert code == 130, text
    assert "using this project's running server" in text
    tail = _after(text, "stage 2/")
    assert "Traceback" not in tail
    lines = [ln for ln in tail.splitlines() if ln.startswith("interrupted")]
    assert len(lines) == 1, tail
    assert "interrupted (SIGINT) during nm_sparsity stage train_digits (2 of" in lines[0]
    assert "finished stages are kept" in lines[0]

    code, text = _run_until(env, r"stage 4/\d+ ", signal.SIGTERM, tmp_path / "term.log")
    assert code == 143, text
    tail = _after(text, "stage 4/")
    assert "Traceback" not in tail and "Crash detected" not in tail
    assert len([ln for ln in tail.splitlines() if ln.startswith("interrupted (SIGTERM) during")]) == 1, tail

    code, text = _run_until(env, "", None, tmp_path / "done.log")
    assert code == 0, text
    reused = re.search(r"(\d+) reused: (.*)", text)
    assert reused and "prepare_digits" in reused.group(2) and "train_digits" in reused.group(2), text

    with sqlite3.connect(home / "mlflow.db") as db:
        parents = [s for (s,) in db.execute(
            "select status from runs where name like ? order by start_time", (f"{PAPER}-%",))]
    assert parents == ["KILLED", "KILLED", "FINISHED"]
    with sqlite3.connect(home / "prefect" / "prefect.db") as db:
        states = [s for (s,) in db.execute("select state_type from flow_run order by created")]
        running_tasks = db.execute("select count(*) from task_run where state_type = 'RUNNING'").fetchone()[0]
    assert states == ["CRASHED", "CRASHED", "COMPLETED"]
    assert running_tasks == 0


def test_the_sweep_crashes_task_runs_left_running_under_an_ended_flow_run(project):
    """The CI flake behind the sweep: an interrupted run's flow run ended Crashed but one task
    run stayed Running (its last state, an event, was lost as the process exited). The next
    run's sweep marks such task runs Crashed; a live process's runs are left alone."""
    from prefect import flow, get_client, task
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Crashed, Running

    home, _ = project
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    host = local.socket.gethostname()

    @flow
    def probe() -> None: ...

    @task
    def step() -> None: ...

    with temporary_settings({PREFECT_API_URL: _api(home / "prefect" / local.STATE_FILE)}):
        with get_client(sync_client=True) as client:
            made = {}
            for who, pid in (("gone", gone), ("alive", str(os.getpid()))):
                run = client.create_flow_run(probe, tags=["reprolab", f"{local.RUN_TAG}:{host}:{pid}"],
                                             state=Crashed(message="interrupted"))
                made[who] = (run, client.create_task_run(step, run.id, dynamic_key=who, state=Running()))
            marked = local.mark_stale_runs()
            states = {who: client.read_task_run(t.id).state.type.value for who, (_, t) in made.items()}
    assert made["gone"][0].name in marked and made["alive"][0].name not in marked
    assert states == {"gone": "CRASHED", "alive": "RUNNING"}
