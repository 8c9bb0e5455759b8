"""Helpers shared by the served-stack tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.config import StackConfig
from infra.stack import StackState

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    """The running test stack: its configuration, state (ports, PIDs) and client environment."""

    cfg: StackConfig
    state: StackState
    env: dict[str, str]

    @contextlib.contextmanager
    def client(self) -> Iterator[None]:
        """Point in-process Prefect/MLflow/boto clients at this stack (env + Prefect settings), then restore."""
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            with temporary_settings(updates={PREFECT_API_URL: self.env["PREFECT_API_URL"],
                                             PREFECT_API_AUTH_STRING: self.env.get("PREFECT_API_AUTH_STRING")}):
                yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def subprocess_env(self, **extra: str) -> dict[str, str]:
        """Environment for a client subprocess (a flow run, dvc): the stack's client env + ``extra``."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
        root = str(REPO_ROOT)
        pythonpath = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        return {**base, **self.env, "PYTHONPATH": pythonpath, "PREFECT_HOME": str(self.cfg.stack_dir / "client"),
                **extra}


def stack_settings(stack_dir: Path, **overrides: str) -> dict[str, str]:
    """A hermetic configuration (ignores the caller's REPROLAB_* environment and profile)."""
    return {
        "REPROLAB_STACK_DIR": str(stack_dir),
        "REPROLAB_HOST": "127.0.0.1",
        "REPROLAB_WORK_POOL": "reprolab-test",
        "REPROLAB_WORKER_POLL_SECONDS": "2",
        "REPROLAB_START_TIMEOUT": "120",
        **overrides,
    }


def make_stack_dir() -> Path:
    # Not under pytest's tmp dirs (mode 0700): PostgreSQL runs as the `postgres` OS user and must reach it.
    path = Path(tempfile.mkdtemp(prefix="reprolab-stack-", dir="/tmp"))
    path.chmod(0o755)
    return path


def run_python(code: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``python -c code`` (a client process) with ``env``; bounded by ``timeout``."""
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=REPO_ROOT)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll ``predicate`` until truthy; fail the test naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
