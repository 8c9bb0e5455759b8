"""Runs of a served deployment execute: the real deployment of ``python -m flows serve`` (what
``make serve`` runs) on a real Prefect server on 127.0.0.1. A run triggered from the CLI with
the smoke profile and an override ends Completed with the override in its params; a run with a
bad override ends Failed, the params error naming the key as its state message.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient
import pytest

from tasks.platform.params import ROOT
from tests.flows.conftest import Served, create_run, tail, wait_final

PAPER = "text_detection"  # the cheapest on the smoke profile (tests/flows/conftest.py)

pytestmark = pytest.mark.served

OVERRIDE = {"audit": {"steps": 120}}  # smoke's audit.steps is 150

def session_runs(filter_string: str) -> list:
    """Runs of this test session's MLflow store (named explicitly: the fluent ``mlflow`` API keeps
    whatever tracking URI an earlier test set)."""
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    return client.search_runs([e.experiment_id for e in client.search_experiments()], filter_string=filter_string)



def test_cli_run_of_served_deployment_completes_with_override(served: Served):
    dep = f"{PAPER}/{PAPER}-nightly"
    params = json.dumps({"profile": "smoke", "overrides": OVERRIDE})
    prefect = str(Path(sys.executable).parent / "prefect")
    out = subprocess.run([prefect, "deployment", "run", dep, "--params", params], cwd=ROOT, env=served.server.env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", out.stdout).group(1)

    run = wait_final(served, run_id)
    assert run["state"]["type"] == "COMPLETED", (run["state"], tail(served.server.logs / "serve.log"))
    assert run["parameters"] == {"profile": "smoke", "overrides": OVERRIDE}
    # the override reached the validated params: the flow's MLflow parent run records them
    runs = session_runs(filter_string=(
        f"tags.`reprolab.paper` = '{PAPER}' and tags.`reprolab.profile` = 'smoke' "
        f"and params.`audit.steps` = '120'"))
    assert runs, "no MLflow run of the served flow run with audit.steps = 120"


def test_served_run_with_bad_override_fails_naming_the_key(served: Served):
    run = create_run(served, PAPER, {"profile": "smoke", "overrides": {"audit": {"stepz": 1}}})
    run = wait_final(served, run["id"])
    assert run["state"]["type"] == "FAILED", run["state"]
    message = run["state"]["message"]
    assert "stepz" in message and "invalid params" in message, message
