"""Deployments: built with the nightly schedule, an editable parameter schema, an importable
entrypoint and a description with a valid example override; and a served deployment really gets
scheduled runs from a Prefect server (catches e.g. sqlalchemy 2.1, whose scheduler never creates
cron runs). That its runs execute: tests/flows/test_served.py.
"""

import json
import os
import re
import time

import httpx
import pytest
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema

from flows.run import entrypoint
from flows.papers import discover
from flows.run import NIGHTLY_CRON, PARAMS_DOC, build_deployments, build_flow, example_override
from tasks.platform.params import ROOT, load_all
from tests.flows.conftest import Served


def test_deployments_have_cron_parameter_schema_and_importable_entrypoint(monkeypatch):
    monkeypatch.chdir(ROOT)  # Prefect resolves a served deployment's entrypoint from the serve process's cwd
    papers = discover()
    deps = build_deployments(list(papers.values()))
    assert [d.name for d in deps] == [f"{p}-nightly" for p in papers]
    for d, (name, paper) in zip(deps, papers.items(), strict=True):
        assert [s.schedule.cron for s in d.schedules] == [NIGHTLY_CRON]
        schema = parameter_schema(build_flow(paper))  # what the UI renders
        props = schema.model_dump()["properties"]
        assert set(props) == {"profile", "overrides"}
        assert set(props["profile"]["enum"]) == {"smoke", "full"}
        assert d.parameters == {"profile": "full", "overrides": {}}
        # what the runner does with every run: re-import the flow from the entrypoint
        assert d.entrypoint == entrypoint(name)
        assert load_flow_from_entrypoint(d.entrypoint, use_placeholder_flow=False) is build_flow(paper)


def test_entrypoint_of_an_unknown_paper_names_it():
    with pytest.raises(Exception, match="no_such_paper"):
        load_flow_from_entrypoint(os.path.join(ROOT, entrypoint("no_such_paper")), use_placeholder_flow=False)


def test_description_example_override_validates_and_points_to_the_params_reference():
    papers = discover()
    assert (ROOT / PARAMS_DOC).is_file()
    for d in build_deployments(list(papers.values())):
        name = d.name.removesuffix("-nightly")
        example = example_override(papers[name])
        assert json.dumps(example) in d.description and PARAMS_DOC in d.description
        load_all({n: p.params_model for n, p in papers.items()}, "full", overrides={name: example})



def test_params_reference_lists_every_papers_sections():
    text = (ROOT / PARAMS_DOC).read_text()
    for name, paper in discover().items():
        assert f"## `{name}`" in text, f"{PARAMS_DOC} has no section for {name}"
        body = text.split(f"## `{name}`", 1)[1].split("\n## ", 1)[0]
        listed = re.findall(r"^\| `(\w+)` \|", body, flags=re.M)
        assert listed == list(paper.params_model.model_fields), f"{PARAMS_DOC}, {name}: sections {listed}"


@pytest.mark.served
def test_served_deployment_gets_scheduled_runs(served: Served):
    deadline = time.monotonic() + 180  # the server's scheduler service runs in a loop
    runs: list = []
    while not runs and time.monotonic() < deadline:
        r = httpx.post(f"{served.server.api}/flow_runs/filter", json={
            "deployments": {"id": {"any_": [d["id"] for d in served.deployments.values()]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}, timeout=10)
        r.raise_for_status()
        runs = r.json()
        if not runs:
            time.sleep(1)
    assert runs, "the served nightly deployment got no scheduled runs"
    for run in runs:
        assert run["parameters"] == {"profile": "full", "overrides": {}}
        assert run["expected_start_time"].endswith(("02:00:00Z", "02:00:00+00:00"))
