"""Run one paper's stages in order through the stage shell (no Prefect) on its smoke profile."""

from __future__ import annotations

import pytest

from flows.papers import discover, get_paper
from tasks.platform.params import load_all
from tasks.platform.stage import resolve_inputs, run_stage


def run_paper(name: str, overrides: dict | None = None, profile: str = "smoke") -> dict:
    """``{stage: StageResult}`` of every stage of ``name`` (content-addressed store of the session)."""
    paper = get_paper(name)
    papers = {n: p.params_model for n, p in discover().items()}
    params = load_all(papers, profile, overrides={name: overrides or {}})[name]
    results = {}
    for st in paper.stages:
        results[st.name] = run_stage(paper, st, params, resolve_inputs(st, results))
    return results


@pytest.fixture(scope="session")
def smoke_results():
    cache: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in cache:
            cache[name] = run_paper(name)
        return cache[name]

    return get
