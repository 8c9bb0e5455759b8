"""The real paper flows on the served stack: deployed to the Prefect server (PostgreSQL) with a
nightly cron, one triggered through the API with parameters (as the UI does) and executed by the
stack's process worker, tracked on the MLflow server (PostgreSQL) with artifacts in S3.

The flow reaches MLflow purely through the worker's environment (``MLFLOW_TRACKING_URI``).
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest

from infra.deploy import deploy_all
from tests.infra.infra_helpers import Stack, wait_for

pytestmark = pytest.mark.infra

PARAMS = {"profile": "smoke", "overrides": {"prune": {"patterns": ["2:4"]}}}


@pytest.fixture(scope="module")
def served_run(stack: Stack, tmp_path_factory):
    """Deploy everything, then trigger nm_sparsity (smoke) through the API and wait for it."""
    from prefect.deployments import run_deployment

    out = tmp_path_factory.mktemp("served")
    with stack.client():
        ids = deploy_all(stack.cfg.work_pool)
        flow_run = run_deployment(
            "nm_sparsity/nm_sparsity-nightly", parameters=PARAMS, timeout=600, poll_interval=2,
            # Per-run job variables keep the test's outputs out of the checkout.
            job_variables={"env": {"REPROLAB_HOME": str(out / "home"), "REPROLAB_REPORTS": str(out / "reports")}},
        )
    return {"ids": ids, "flow_run": flow_run, "out": out}


def _mlflow_runs(stack: Stack):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(stack.env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("reprolab/nm_sparsity")
    assert exp is not None, "no MLflow experiment on the server: the flow did not track there"
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`reprolab.profile` = 'smoke'")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return client, exp, parents, runs


def test_triggered_run_gets_exactly_its_parameters(served_run, stack: Stack) -> None:
    flow_run = served_run["flow_run"]
    assert flow_run.state is not None and flow_run.state.is_completed(), flow_run.state
    assert flow_run.parameters == PARAMS
    # What the flow ran with: the override reached the validated params it logged.
    _, _, parents, _ = _mlflow_runs(stack)
    assert len(parents) == 1
    assert parents[0].data.params["prune.patterns"] == '["2:4"]'  # smoke profile alone has 2:4 and 1:8


def test_mlflow_runs_on_server_and_artifacts_byte_identical_from_s3(served_run, stack: Stack, tmp_path) -> None:
    from flows.papers import get_paper

    client, exp, (parent,), runs = _mlflow_runs(stack)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == sorted(s.name for s in get_paper("nm_sparsity").stages)
    assert parent.info.status == "FINISHED"
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied: the worker has no S3 role here
    s3 = boto3.client("s3", endpoint_url=stack.env["REPROLAB_S3_URL"], region_name="us-east-1")
    local_reports = Path(parent.data.tags["reprolab.report"]).parent  # reports/nm_sparsity/runs/<smoke+overrides>/
    for name in ("report.md", "accuracy_vs_sparsity.png"):
        via_mlflow = Path(client.download_artifacts(parent.info.run_id, f"report/{name}", str(tmp_path))).read_bytes()
        key = f"mlflow/{exp.experiment_id}/{parent.info.run_id}/artifacts/report/{name}"
        via_s3 = s3.get_object(Bucket=stack.cfg.s3_bucket, Key=key)["Body"].read()
        written = (local_reports / name).read_bytes()
        assert hashlib.sha256(via_s3).digest() == hashlib.sha256(written).digest() == hashlib.sha256(via_mlflow).digest()
        assert len(written) > 100


def test_every_paper_deployed_with_a_nightly_cron_and_scheduled_runs(served_run, stack: Stack) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    from flows.papers import discover
    from flows.run import NIGHTLY_CRON

    papers = discover()
    assert {f"{p}/{p}-nightly" for p in papers} <= set(served_run["ids"])

    async def check():
        async with get_client() as client:
            out = {}
            for name in papers:
                dep = await client.read_deployment_by_name(f"{name}/{name}-nightly")
                assert dep.work_pool_name == stack.cfg.work_pool
                assert [s.schedule.cron for s in dep.schedules] == [NIGHTLY_CRON]
                assert dep.parameters == {"profile": "full", "overrides": {}}
                assert set(dep.parameter_openapi_schema["properties"]) == {"profile", "overrides"}
                runs = await client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))
                out[name] = [r for r in runs if r.state_name == "Scheduled" and r.auto_scheduled]
            return out

    scheduled = wait_for(lambda: (s := asyncio.run(check())) and all(len(v) >= 3 for v in s.values()) and s,
                         timeout=90, what="the Prefect scheduler to create the nightly runs")
    minute, hour = (int(x) for x in NIGHTLY_CRON.split()[:2])
    now = datetime.now(timezone.utc)
    for runs in scheduled.values():
        starts = sorted(r.expected_start_time.astimezone(timezone.utc) for r in runs)
        assert all(s > now and (s.hour, s.minute, s.second) == (hour, minute, 0) for s in starts)
        assert starts[1] - starts[0] == timedelta(days=1)
        assert all(r.parameters == {"profile": "full", "overrides": {}} for r in runs)
