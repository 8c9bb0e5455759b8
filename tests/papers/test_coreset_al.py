"""coreset_al end to end on the smoke profile (stage shell, no Prefect) and its bad-input errors."""

import pyarrow.compute as pc
import pytest
from pydantic import ValidationError

from flows.papers import discover, get_paper
from flows.papers.coreset_al import CoresetALParams
from tasks.data_selection.active import aulc
from tasks.platform import artifacts
from tasks.platform.errors import ReprolabError
from tasks.platform.params import load_all
from tasks.platform.report import VERDICTS
from tasks.platform.stage import resolve_inputs, run_stage, stage_key, store_dir


def test_smoke_pipeline_reports_every_claim(smoke_results):
    r = smoke_results("coreset_al")
    claims = artifacts.read(r["report"].path("claims"))
    assert len(claims["claims"]) == 6 and all(c["verdict"] in VERDICTS for c in claims["claims"])
    assert "AULC(k-center) - AULC(random)" in claims["claims"][2]["measured"]
    assert "at batch 10 minus the same at batch 5" in claims["claims"][4]["measured"]
    assert "AULC(k-center) - AULC(BADGE)" in claims["claims"][5]["measured"]
    curves = artifacts.read(r["al_digits"].path("curves"))
    assert set(curves.column("selector").to_pylist()) == {"random", "entropy", "kcenter", "robust_kcenter", "badge"}
    # the batch study: same label budget at every batch size (10 labels: 2 rounds of 5, 1 round of 10)
    batch = artifacts.read(r["batch_digits"].path("curves")).to_pylist()
    assert {(x["batch_size"], x["selector"]) for x in batch} == {(b, s) for b in (5, 10) for s in ("random", "entropy", "kcenter")}
    for b, sizes in ((5, [10, 15, 20]), (10, [10, 20])):
        assert sorted({x["n_labelled"] for x in batch if x["batch_size"] == b}) == sizes
    picks = artifacts.read(r["batch_digits"].path("selections"))
    assert picks.filter(pc.equal(picks.column("batch_size"), 5)).num_rows == 2 * 3 * 2 * 5  # seeds x selectors x rounds x b
    # every selector of a seed starts from the same initial set and model: equal round-0 accuracy
    rows = curves.to_pylist()
    for seed in (0, 1):
        r0 = {x["test_acc"] for x in rows if x["seed"] == seed and x["round"] == 0}
        assert len(r0) == 1
    metrics = artifacts.read(r["al_digits"].path("metrics"))
    pts = sorted((x["n_labelled"], x["test_acc"]) for x in rows if x["selector"] == "kcenter" and x["seed"] == 1)
    assert metrics["aulc"]["kcenter.1"] == pytest.approx(aulc(*map(list, zip(*pts))))


def test_unknown_selector_and_missing_baseline_are_named():
    with pytest.raises(ValidationError, match="unknown selector.*coreset_magic"):
        CoresetALParams.model_validate({"loop": {"selectors": ["random", "kcenter", "entropy", "coreset_magic"]}})
    with pytest.raises(ValidationError, match="must include"):
        CoresetALParams.model_validate({"loop": {"selectors": ["random", "entropy"]}})
    with pytest.raises(ValidationError, match=r"batch_sizes \[30\] do not divide the label budget .* = 400"):
        CoresetALParams.model_validate({"loop": {"batch_study": {"batch_sizes": [10, 30]}}})
    with pytest.raises(ValidationError, match="batch_sizes must be >= 2 distinct"):
        CoresetALParams.model_validate({"loop": {"batch_study": {"batch_sizes": [10, 10]}}})


def test_budget_larger_than_the_pool_fails_the_stage_with_no_partial_output(smoke_results):
    paper = get_paper("coreset_al")
    papers = {n: p.params_model for n, p in discover().items()}
    params = load_all(papers, "smoke", overrides={"coreset_al": {"loop": {"al": {"batch_size": 500}}}})["coreset_al"]
    done = smoke_results("coreset_al")
    st = next(s for s in paper.stages if s.name == "al_digits")
    inputs = resolve_inputs(st, done)
    final = store_dir(paper, st, stage_key(paper, st, params, {k: str(v) for k, v in inputs.items()}))
    with pytest.raises(ReprolabError, match="exceeds the .* training examples"):
        run_stage(paper, st, params, inputs)
    assert not final.exists()
