"""Deployments: built with the nightly schedule and an editable parameter schema, and a served
deployment really gets scheduled runs from a Prefect server (catches e.g. sqlalchemy 2.1,
whose scheduler never creates cron runs)."""

import os
import socket
import subprocess
import sys
import time

import httpx
from prefect.utilities.callables import parameter_schema

from flows.papers import discover
from flows.run import NIGHTLY_CRON, build_deployments
from tasks.platform.params import ROOT


def test_deployments_have_cron_and_parameter_schema():
    papers = list(discover().values())
    deps = build_deployments(papers)
    assert [d.name for d in deps] == [f"{p.name}-nightly" for p in papers]
    for d in deps:
        assert [s.schedule.cron for s in d.schedules] == [NIGHTLY_CRON]
        schema = parameter_schema(discover()[d.name.removesuffix("-nightly")].flow)  # what the UI renders
        props = schema.model_dump()["properties"]
        assert set(props) == {"profile", "overrides"}
        assert set(props["profile"]["enum"]) == {"smoke", "full"}
        assert d.parameters == {"profile": "full", "overrides": {}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_deployment_gets_scheduled_runs(tmp_path):
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_API_URL=api,
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    (tmp_path / "prefect").mkdir()
    prefect = os.path.join(os.path.dirname(sys.executable), "prefect")
    server = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=open(tmp_path / "server.log", "w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    serve = None
    try:
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.time() < deadline, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(0.5)
        serve = subprocess.Popen([sys.executable, "-m", "flows", "serve", "--paper", "nm_sparsity"], cwd=ROOT,
                                 env=env, stdout=open(tmp_path / "serve.log", "w"), stderr=subprocess.STDOUT,
                                 start_new_session=True)
        deadline = time.time() + 180
        runs = []
        while time.time() < deadline and not runs:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            r = httpx.post(f"{api}/flow_runs/filter", json={
                "deployments": {"name": {"any_": ["nm_sparsity-nightly"]}},
                "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}, timeout=10)
            runs = r.json() if r.status_code == 200 else []
            time.sleep(1)
        assert runs, "the served nightly deployment got no scheduled runs"
        for run in runs:
            assert run["parameters"] == {"profile": "full", "overrides": {}}
            assert run["expected_start_time"].endswith(("02:00:00Z", "02:00:00+00:00"))
    finally:
        for p in (serve, server):
            if p is not None:
                os.killpg(p.pid, 9)
                p.wait()
