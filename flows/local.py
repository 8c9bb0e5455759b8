"""The project's own Prefect state and server: where ``make run``/``ui``/``serve`` keep history.

* :func:`configure` (call before ``import prefect``): ``PREFECT_HOME`` defaults to
  ``$REPROLAB_HOME/prefect`` (``<project>/.reprolab/prefect``), so one checkout's dashboard
  never shows another's runs. A ``PREFECT_HOME`` or ``PREFECT_API_URL`` set by the user wins.
* :func:`project_server_url`: the API URL of this project's running local server (the one
  ``make ui`` starts through :mod:`flows.server`, which records itself in
  ``$PREFECT_HOME/reprolab-server.json``), checked with a short health probe; else ``None``.
* :class:`TemporaryServer`: when no server is running, ``make run`` starts one for the run
  (loopback, free port, no UI) in its own session, so the terminal's Ctrl-C reaches only the
  run, which can still report "Crashed" to a live server before the server is stopped.

Imports nothing heavy (no Prefect): ``python -m flows run`` calls it before discovery.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tasks.platform.errors import ReprolabError
from tasks.platform.params import ROOT
from tasks.platform.process import pid_alive

STATE_FILE = "reprolab-server.json"
DEFAULT_PORT = 4200


def reprolab_home() -> Path:
    return Path(os.environ.get("REPROLAB_HOME", ROOT / ".reprolab"))


def configure() -> None:
    """Set the project's Prefect defaults in ``os.environ`` (never overriding the user's)."""
    if not os.environ.get("PREFECT_HOME") and not os.environ.get("PREFECT_API_URL"):
        home = reprolab_home() / "prefect"
        home.mkdir(parents=True, exist_ok=True)  # Prefect creates only the last level
        os.environ["PREFECT_HOME"] = str(home)
    for key, value in {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1"}.items():
        os.environ.setdefault(key, value)


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect")


def healthy(api_url: str, timeout: float = 1.0, auth: str | None = None) -> bool:
    """True when ``GET <api_url>/health`` answers 200 within ``timeout`` seconds."""
    req = urllib.request.Request(f"{api_url.rstrip('/')}/health")
    if auth:
        import base64

        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback URL
            return resp.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


def project_server_url(timeout: float = 1.0) -> str | None:
    """API URL of this project's running Prefect server (see :mod:`flows.server`), or ``None``."""
    path = prefect_home() / STATE_FILE
    try:
        info = json.loads(path.read_text())
        url, pid = str(info["api_url"]), int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not pid_alive(pid) or not healthy(url, timeout):
        return None
    return url


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class TemporaryServer:
    """A Prefect server for one run: ``python -m flows.server`` on a free loopback port.

    Started in its own session (the terminal's Ctrl-C does not reach it); :meth:`stop`
    ends it with SIGTERM (then SIGKILL after ``grace`` seconds), and it stops by itself
    within a second or two when this process dies without stopping it (``kill -9``).
    """

    def __init__(self, startup_timeout: float | None = None):
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.startup_timeout = startup_timeout or float(
            os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"))
        self.log = reprolab_home() / "prefect-server.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flows.server", "--port", str(self.port), "--no-ui", "--temporary",
                 "--exit-with", str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                start_new_session=True, env=os.environ.copy(),
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ReprolabError(f"the temporary Prefect server exited with status {self.proc.returncode}; "
                                    f"see {self.log}")
            if healthy(self.api_url, 0.5):
                return self.api_url
            time.sleep(0.2)
        self.stop()
        raise ReprolabError(f"the temporary Prefect server did not answer within {self.startup_timeout:.0f} s; "
                            f"see {self.log} (or start one first: make ui)")

    def stop(self, grace: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass


def use_api_url(url: str) -> None:
    """Point this process's Prefect client at ``url`` (also when Prefect is already imported)."""
    os.environ["PREFECT_API_URL"] = url
    if "prefect.context" in sys.modules:
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()


def require_server() -> str:
    """The Prefect API that ``make serve`` registers deployments with.

    ``PREFECT_API_URL`` if set, else this project's running server; with neither, a
    :class:`~tasks.platform.errors.ReprolabError` giving the command to run (deployments served into a
    throwaway server would be unreachable from any UI and vanish on exit).
    """
    url = os.environ.get("PREFECT_API_URL") or project_server_url()
    if not url:
        raise ReprolabError(
            "no Prefect server to serve the deployments into: start this project's server first with "
            "`make ui` (in another terminal), or set PREFECT_API_URL=http://HOST:PORT/api")
    use_api_url(url)
    return url


def drain_prefect(timeout: float = 5.0) -> None:
    """Send the Prefect logs and events still queued, before the server they go to stops."""
    if "prefect.logging.handlers" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=timeout)
        except Exception:  # noqa: BLE001 - the server may be gone; nothing left to do then
            pass


RUN_TAG = "reprolab-pid"


def run_tag() -> str:
    """Tag put on the flow runs of this process: ``reprolab-pid:<host>:<pid>``."""
    return f"{RUN_TAG}:{socket.gethostname()}:{os.getpid()}"


def mark_stale_runs(*, this_process: bool = False) -> list[str]:
    """Mark Crashed the RUNNING/PENDING flow runs and task runs of this project whose process is
    gone: flow runs tagged by :func:`run_tag` with this host and a pid no longer alive.

    A task run can be left Running under a flow run that did end Crashed: a task run's state
    travels to the server as an event, and the last one was seen lost when an interrupted
    process exits. So the sweep also looks at the live task runs of ended flow runs.

    Args:
        this_process: sweep this process's own runs instead (called on Ctrl-C/SIGTERM once the
            flow has ended, before the process exits).

    Returns the names of the flow runs whose runs were marked. Runs of served deployments (no
    such tag) are left to their runner.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    live = [StateType.RUNNING, StateType.PENDING]
    host = socket.gethostname()
    ours = FlowRunFilterTags(all_=["reprolab", run_tag()] if this_process else ["reprolab"])
    marked = []
    with get_client(sync_client=True) as client:
        runs = {r.id: r for r in client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=live)), tags=ours))}
        live_tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(tags=ours),
            task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=live))))
        ended = sorted({t.flow_run_id for t in live_tasks if t.flow_run_id and t.flow_run_id not in runs})
        if ended:
            runs.update({r.id: r for r in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ended)))})
        for run in runs.values():
            tag = next((t for t in run.tags if t.startswith(f"{RUN_TAG}:")), None)
            if tag is None:
                continue
            _, run_host, pid = tag.rsplit(":", 2)
            if not this_process and (run_host != host or not pid.isdigit() or pid_alive(int(pid))):
                continue
            reason = (f"process {pid} on {host} ended without reporting (killed or interrupted); "
                      f"marked by a later run (pid {os.getpid()})" if not this_process else
                      "interrupted (Ctrl-C/SIGTERM) while this task ran")
            for task_run in (t for t in live_tasks if t.flow_run_id == run.id):
                client.set_task_run_state(task_run.id, Crashed(message=reason), force=True)
            if run.state_type in live:
                client.set_flow_run_state(run.id, Crashed(message=reason), force=True)
            marked.append(run.name)
    return marked
