"""Faults: servers stopped mid-run, wrong PostgreSQL password, unreachable S3 endpoint."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.config import load_config
from infra.health import ServiceUnavailable, check_postgres, check_s3
from infra.stack import pg_url, start_service, stop_service, up
from infra.workloads import step_loss
from tests.infra.infra_helpers import REPO_ROOT, Stack, make_stack_dir, stack_settings, wait_for

pytestmark = pytest.mark.infra

FLOW_CODE = (
    "import sys; from infra.workloads import tracked_flow; "
    "tracked_flow(run_key=sys.argv[1], steps=3, lr=0.05, seed=1, gate=(sys.argv[2] or None))"
)


def _start_flow(stack: Stack, run_key: str, gate: Path | None, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", FLOW_CODE, run_key, str(gate or "")], cwd=REPO_ROOT,
        env=stack.subprocess_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _mlflow_runs(stack: Stack, run_key: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(stack.env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("reprolab-infra")
    if exp is None:
        return client, []
    return client, client.search_runs([exp.experiment_id], filter_string=f"tags.`reprolab.run_key` = '{run_key}'")


def _logged_steps(stack: Stack, run_key: str) -> list[int]:
    client, runs = _mlflow_runs(stack, run_key)
    if not runs:
        return []
    return sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, "loss"))


def _assert_complete_once(stack: Stack, run_key: str) -> None:
    """Exactly one MLflow run for the key, each step logged exactly once with the right value."""
    client, runs = _mlflow_runs(stack, run_key)
    assert len(runs) == 1, f"{len(runs)} MLflow runs for {run_key}"
    history = sorted(client.get_metric_history(runs[0].info.run_id, "loss"), key=lambda m: m.step)
    assert [m.step for m in history] == [0, 1, 2]
    assert [m.value for m in history] == [step_loss(0.05, s, 1) for s in range(3)]
    assert [a.path for a in client.list_artifacts(runs[0].info.run_id)] == ["summary.json"]


def test_mlflow_stopped_mid_run_fails_clearly_and_rerun_completes_once(stack: Stack, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    # One MLflow HTTP retry (configuration, not code) keeps the failure quick.
    proc = _start_flow(stack, "mlflow-fault", gate, MLFLOW_HTTP_REQUEST_MAX_RETRIES="1")
    try:
        wait_for(lambda: _logged_steps(stack, "mlflow-fault") == [0], timeout=120, what="step 0 logged")
        stop_service(stack.cfg, stack.state, "mlflow")
        gate.touch()
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert f"MLflow server at {stack.env['MLFLOW_TRACKING_URI']} failed" in out, out[-3000:]

    start_service(stack.cfg, stack.state, "mlflow")
    assert _logged_steps(stack, "mlflow-fault") == [0]  # nothing lost while it was down
    rerun = _start_flow(stack, "mlflow-fault", None)
    out, _ = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, out[-3000:]
    _assert_complete_once(stack, "mlflow-fault")


def test_prefect_stopped_mid_run_client_retries_and_completes_once(stack: Stack, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    proc = _start_flow(stack, "prefect-fault", gate)
    try:
        wait_for(lambda: _logged_steps(stack, "prefect-fault") == [0], timeout=120, what="step 0 logged")
        stop_service(stack.cfg, stack.state, "prefect")
        gate.touch()
        time.sleep(2)  # the flow is now reporting task states to a dead API
        assert proc.poll() is None, "the flow gave up at once instead of retrying"
        start_service(stack.cfg, stack.state, "prefect")
        out, _ = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-3000:]
    _assert_complete_once(stack, "prefect-fault")
    # The Prefect server holds the whole run: one flow run, every task run completed exactly once.
    flow_states, task_states = asyncio.run(_server_view("prefect-fault"))
    assert flow_states == ["Completed"]
    assert sorted(name.rsplit("-", 1)[0] for name, _ in task_states) == [
        "log_summary", "open_run", "train_step", "train_step", "train_step"]
    assert {state for _, state in task_states} == {"Completed"}


async def _server_view(run_key: str):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = [r for r in await client.read_flow_runs() if r.parameters.get("run_key") == run_key]
        tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id for r in runs])))
        return [(r.state_name) for r in runs], sorted((t.name, t.state_name) for t in tasks)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: nothing listens there


def test_wrong_postgres_password_is_a_clear_bounded_error(stack: Stack) -> None:
    good = pg_url(stack.cfg, stack.state)
    bad = good.replace(f":{stack.cfg.pg_password}@", ":not-the-password@")
    t0 = time.monotonic()
    with pytest.raises(ServiceUnavailable, match=r"PostgreSQL at .*password authentication failed"):
        check_postgres(bad, timeout=5)
    assert time.monotonic() - t0 < 10
    # stack-up against that server refuses before starting anything.
    cfg = load_config(stack_settings(make_stack_dir(), REPROLAB_PG_URL=bad))
    try:
        t0 = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="PostgreSQL") as err:
            up(cfg)
        assert time.monotonic() - t0 < 15
        assert "not-the-password" not in str(err.value)  # the password is redacted
        assert not (cfg.stack_dir / "logs").exists()  # refused before starting anything
    finally:
        shutil.rmtree(cfg.stack_dir, ignore_errors=True)


def test_unreachable_s3_endpoint_is_a_clear_bounded_error(stack: Stack) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    with pytest.raises(ServiceUnavailable, match=f"S3 store at {endpoint} is unreachable"):
        check_s3(endpoint, "S3RVER", "S3RVER", "reprolab", timeout=3)
    assert time.monotonic() - t0 < 10
    cfg = load_config(stack_settings(make_stack_dir(), REPROLAB_S3_ENDPOINT=endpoint))
    try:
        with pytest.raises(ServiceUnavailable, match="S3 store"):
            up(cfg)
    finally:
        shutil.rmtree(cfg.stack_dir, ignore_errors=True)
    # The stack's own S3 server with unknown credentials is rejected by name too.
    with pytest.raises(ServiceUnavailable, match="S3 store at .*not usable .*InvalidAccessKeyId"):
        check_s3(stack.env["REPROLAB_S3_URL"], "NOT-A-KEY", "S3RVER", stack.cfg.s3_bucket, timeout=3)
