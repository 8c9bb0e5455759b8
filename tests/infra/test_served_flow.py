"""A flow run through the Prefect server (PostgreSQL), tracked on the MLflow server (PostgreSQL, S3).

The run is triggered through the Prefect REST API with parameters, exactly as the UI's
"Run with custom parameters" does, and executed by the stack's process worker.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from infra_helpers import Stack, wait_for

from infra.deploy import deploy_entrypoint
from infra.workloads import step_loss

pytestmark = pytest.mark.infra

PARAMS = {"run_key": "api-triggered", "steps": 2, "lr": 0.125, "seed": 7, "note": "from the UI"}


@pytest.fixture(scope="module")
def triggered_run(stack: Stack):
    """Deploy the tracked flow (no schedule) and trigger one run with PARAMS through the API."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: stack.env["PREFECT_API_URL"]}):
        deploy_entrypoint("infra/workloads.py:tracked_flow", "tracked-manual", work_pool=stack.cfg.work_pool,
                          cron=None, parameters={"run_key": "default", "steps": 1})
        flow_run = run_deployment("reprolab-tracked/tracked-manual", parameters=PARAMS, timeout=150,
                                  poll_interval=1)
    return flow_run


def test_triggered_run_gets_exactly_its_parameters(triggered_run, stack: Stack) -> None:
    assert triggered_run.state is not None and triggered_run.state.is_completed(), triggered_run.state
    assert triggered_run.parameters == PARAMS
    # What the flow *received* (echoed into its MLflow params), typed as given.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(stack.env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("reprolab-infra")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`reprolab.run_key` = 'api-triggered'")
    assert len(runs) == 1
    assert runs[0].data.params == {"steps": "2", "lr": "0.125", "seed": "7", "note": "from the UI"}


def test_mlflow_run_on_server_and_artifact_byte_identical_from_s3(triggered_run, stack: Stack, tmp_path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(stack.env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("reprolab-infra")
    (run,) = client.search_runs([exp.experiment_id], filter_string="tags.`reprolab.run_key` = 'api-triggered'")
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [0, 1]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [step_loss(0.125, s, 7) for s in (0, 1)]
    assert run.info.status == "FINISHED"
    # The MLflow server proxies artifacts (--serve-artifacts): the client needs no S3 credentials.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    local = client.download_artifacts(run.info.run_id, "summary.json", str(tmp_path))
    via_mlflow = open(local, "rb").read()
    expected = {"run_key": "api-triggered", "params": {k: v for k, v in PARAMS.items() if k != "run_key"},
                "losses": [step_loss(0.125, s, 7) for s in (0, 1)]}
    assert json.loads(via_mlflow) == expected
    # ... and the same bytes sit in the S3 bucket, under the server's artifacts destination.
    s3 = boto3.client("s3", endpoint_url=stack.env["REPROLAB_S3_URL"], region_name="us-east-1")
    key = f"mlflow/{exp.experiment_id}/{run.info.run_id}/artifacts/summary.json"
    via_s3 = s3.get_object(Bucket=stack.cfg.s3_bucket, Key=key)["Body"].read()
    assert via_s3 == via_mlflow
    # The flow's own record of what it uploaded (returned digest) matches the stored bytes.
    assert hashlib.sha256(via_s3).hexdigest() == hashlib.sha256(via_mlflow).hexdigest()


def test_cron_deployment_gets_scheduled_runs_from_the_server(stack: Stack) -> None:
    """A nightly cron deployment: the server's scheduler creates the next runs at 03:00 UTC."""
    import asyncio

    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    dep_id = deploy_entrypoint("infra/workloads.py:tracked_flow", "tracked-nightly", work_pool=stack.cfg.work_pool,
                               cron="0 3 * * *", parameters={"run_key": "nightly", "steps": 1})

    async def scheduled():
        async with get_client() as client:
            runs = await client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep_id])))
            return [r for r in runs if r.state_name == "Scheduled" and r.auto_scheduled]

    runs = wait_for(lambda: len(asyncio.run(scheduled())) >= 3 and asyncio.run(scheduled()), timeout=60,
                    what="the Prefect scheduler to create cron runs")
    starts = sorted(r.expected_start_time.astimezone(timezone.utc) for r in runs)
    now = datetime.now(timezone.utc)
    assert all(s > now for s in starts)
    assert all((s.hour, s.minute, s.second) == (3, 0, 0) for s in starts)
    assert starts[1] - starts[0] == timedelta(days=1)
    assert all(r.parameters == {"run_key": "nightly", "steps": 1} for r in runs)
