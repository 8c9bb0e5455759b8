"""Tuning of the distillation papers' arms (issue #17): params checks, stage wiring, merge."""

from __future__ import annotations

import pyarrow as pa
import pytest

from flows.papers.pld import PLDParams
from tasks.distill import tuning as distill_tuning
from tasks.platform.errors import ArtifactError, ParamsError
from tasks.platform.params import DEFAULT_PARAMS, deep_merge, read_yaml, section_raw, validate_section
from tasks.platform.report import render_index
from tasks.platform.tuning import TestLeakError, TuningBudget, run_study
from tasks.platform.tuning_report import insert_after_claims, merge_claims, merge_reports


def pld_params(**override):
    raw = section_raw(read_yaml(DEFAULT_PARAMS), "pld", PLDParams, "smoke")
    return validate_section("pld", PLDParams, deep_merge(raw, override))


def space(**spaces):
    return {"tuning": {"spaces": spaces}}


@pytest.mark.parametrize(
    ("override", "match"),
    [
        (space(kd={"loss_params.alpha": {"type": "float", "low": 0.1, "high": 1.0}}),
         r"UnknownHyperparameterError: tuning.spaces.kd.loss_params.alpha: arm 'kd' has no .*'loss_params.temperature'"),
        (space(pld={"loss_params.temperature": {"type": "float", "low": 2.0, "high": 4.0}}),
         r"SettingOutsideSpaceError: tuning.spaces.pld.loss_params.temperature: the paper's setting 1.0"),
        (space(ce={"lr": {"type": "float", "low": 0.0, "high": 0.02, "log": False}}),
         r"InvalidSpaceError: tuning.spaces.ce.lr = 0.0 is not valid for arm 'ce'"),
        (space(ce={"max_epochs": {"type": "int", "low": 1, "high": 60}}),
         r"ReservedHyperparameterError: tuning.spaces.ce.max_epochs"),
        (space(ce={"lr": {"type": "float", "low": 0.02, "high": 0.001}}),
         r"pld.tuning.spaces.ce.lr.*EmptyRangeError: low = 0.02 >= high = 0.001"),
        (space(ce={"lr": {"type": "float", "low": -1.0, "high": 0.02, "log": True}}),
         r"pld.tuning.spaces.ce.lr.*LogScaleError"),
        ({"tuning": {"budget": {"seeds": [7]}}}, r"tuning.budget.seeds = \[7\]: seed\(s\) \[7\] not in distill.seeds"),
        ({"tuning": {"budget": {"n_trials": 0}}}, r"pld.tuning.budget.n_trials = 0"),
    ],
)
def test_bad_tuning_sections_are_refused_before_any_work(override, match):
    pld_params()  # the shipped section is valid
    with pytest.raises(ParamsError, match=match):
        pld_params(**override)


def test_tune_stage_never_sees_the_test_split(monkeypatch):
    from flows.papers import discover

    for paper in discover().values():
        for st in paper.stages:
            if st.name == "tune":
                assert all(ref.rsplit(".", 1)[1] != "test" for ref in st.inputs.values()), paper.name
    # PLANTED LEAK: the selection stage wired to the test split is refused when declared
    monkeypatch.setattr(distill_tuning, "data_inputs", lambda test=True: {"train": "prepare.train", "val": "prepare.test"})
    with pytest.raises(TestLeakError, match="stage 'tune' selects hyperparameters but takes test data"):
        distill_tuning.tuning_stages(("ce", "kd"), "train_teacher.weights")


def test_tuned_arm_refuses_a_stale_configuration():
    p = pld_params()
    params = {"distill": p.distill, "arms.kd": p.arms["kd"]}
    config = distill_tuning.arm_settings(p.distill, {"kd": p.arms["kd"]})["kd"]
    stale = {"arms": {"kd": {"tuned": {"lr": 0.01}, "config": {**config, "lr": 0.01, "batch_size": 7}}}}
    with pytest.raises(ArtifactError, match="configuration of arm 'kd' does not match its params"):
        distill_tuning.distill_tuned_arm(params, tuned=stale)
    with pytest.raises(ArtifactError, match="tuned.json has no arm 'kd'"):
        distill_tuning.distill_tuned_arm(params, tuned={"arms": {}})


def _claims(*verdicts):
    return {"paper": "toy", "title": "Toy", "arxiv": "",
            "claims": [{"claim": f"claim {i}", "measured": f"m{i}", "verdict": v, "why": ""} for i, v in enumerate(verdicts)],
            "counts": {v: verdicts.count(v) for v in ("reproduced", "not reproduced", "not testable at this scale")}}


def test_merge_marks_robust_claims_and_flags_undertuned_baselines(tmp_path):
    paper = _claims("reproduced", "not reproduced", "not testable at this scale")
    tuned = _claims("not reproduced", "not reproduced", "not testable at this scale")
    merged = merge_claims(paper, tuned)
    assert [c["robust"] for c in merged["claims"]] == [False, True, None]
    assert merged["counts"]["robust"] == 1 and merged["counts"]["depends on tuning"] == 1
    with pytest.raises(ValueError, match="report_tuned has 2 claims, report_paper 3"):
        merge_claims(paper, _claims("reproduced", "reproduced"))

    study = run_study({"ce": {"lr": 0.01, "max_epochs": 1}, "kd": {"lr": 0.01, "max_epochs": 1}}, {"ce": {}, "kd": {}},
                      TuningBudget(n_trials=1), lambda arm, c, s, v: (0.5, 1), val=None).to_json()
    md = "# R\n\n## Claims and verdicts\n\n| claim |\n|---|\n\n## Table\n\nrows\n"
    metric = {"seeds": {"0": {"test": {"acc": 0.4}}, "1": {"test": {"acc": 0.5}}}}
    ce_metric = {"seeds": {"0": {"test": {"acc": 0.6}}, "1": {"test": {"acc": 0.6}}}}
    out = merge_reports(
        None, floors=distill_tuning.student_floors(("ce", "kd")), values=distill_tuning.test_acc,
        study=study, paper_report=md, paper_claims=paper, tuned_claims=tuned,
        paper_metrics={"x": 1.0}, paper_summary=pa.table({"a": [1]}),
        paper_arm_ce=ce_metric, paper_arm_kd=metric, tuned_arm_ce=ce_metric, tuned_arm_kd=ce_metric,
    )
    assert set(out) == {"report", "claims", "metrics", "summary"}
    text = out["report"]
    assert text.index("## Claims and verdicts") < text.index("## Robustness to tuning") < text.index("## Table")
    assert "kd (0.45) is 15.00 pts below ce (0.6): a distilled student below the student trained alone" in text
    assert "- tuned: none" in text
    assert out["metrics"]["x"] == 1.0 and out["metrics"]["tuning"]["flags_paper"] == 1
    assert insert_after_claims("## Claims and verdicts\n\nx\n", "S\n").endswith("x\n\nS\n")

    from tasks.platform import artifacts

    artifacts.write(tmp_path / "toy" / "report.md", text)
    artifacts.write(tmp_path / "toy" / "claims.json", out["claims"])
    artifacts.write(tmp_path / "toy" / "lineage.json", {"lineage": {"profile": "full", "overrides": ""}, "stages": []})
    index = render_index(tmp_path, {"toy": type("P", (), {"title": "Toy", "arxiv": ""})()})
    assert "| `toy` | Toy | 1 | 1 | 1 | 1 of 2 | full |" in index
    assert "- **reproduced** (tuned: not reproduced; depends on tuning): claim 0" in index
    assert "- **not reproduced** (robust): claim 1" in index
