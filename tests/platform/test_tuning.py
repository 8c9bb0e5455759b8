"""The equal-budget tuning mechanism (tasks/platform/tuning.py) on toy objectives.

Each toy "arm" has a known validation optimum; some have a different test optimum, so a
search that selected on test data would choose another configuration.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.platform.params import validate_section
from tasks.platform.errors import ParamsError
from tasks.platform.tuning import (
    TRIALS_SCHEMA,
    BudgetError,
    Choice,
    EmptyRangeError,
    FloatRange,
    FloorRule,
    IntRange,
    InvalidSpaceError,
    LogScaleError,
    ReservedHyperparameterError,
    SettingOutsideSpaceError,
    TestLeakError,
    TrialStore,
    TuningBudget,
    TuningParams,
    UnknownHyperparameterError,
    check_equal_budget,
    check_selection_inputs,
    check_spaces,
    content_digest,
    run_study,
    two_verdicts,
    undertuned,
)

SETTING = {"lr": 0.01, "depth": 2, "opt": {"kind": "sgd", "momentum": 0.0}, "max_epochs": 3, "seeds": [0]}


def quadratic(arm, config, seed, split):
    """Score = -(log10 lr - target)^2 - 0.1 (depth - 5)^2 + 0.2 [adam]; optimum at the split's target."""
    import math

    score = -((math.log10(config["lr"]) - split["target"]) ** 2) - 0.1 * (config["depth"] - 5) ** 2
    score += 0.2 * (config["opt"]["kind"] == "adam")
    return score, config["max_epochs"]


SPACE = {
    "lr": FloatRange(low=1e-4, high=1.0, log=True),
    "depth": IntRange(low=1, high=8),
    "opt.kind": Choice(choices=("sgd", "adam")),
}


def study(n_trials=30, settings=None, spaces=None, fit_score=quadratic, val=None, **kw):
    settings = settings or {"a": SETTING, "b": SETTING}
    spaces = spaces or {"a": SPACE, "b": {"lr": SPACE["lr"]}}
    return run_study(
        settings, spaces, TuningBudget(n_trials=n_trials, seeds=(0, 1)), fit_score, val=val or {"target": -1.5}, **kw
    )


# --------------------------------------------------------------------------------------------
# The search
# --------------------------------------------------------------------------------------------


def test_tiny_search_finds_the_known_optimum():
    res = study(n_trials=40)
    tuned = res.arms["a"].tuned
    assert abs(tuned["lr"] - 10**-1.5) / 10**-1.5 < 0.35  # optimum lr = 0.0316 (log10 = -1.5)
    assert tuned["depth"] == 5 and tuned["opt.kind"] == "adam"
    assert res.arms["a"].tuned_val > res.arms["a"].paper_val
    # the paper's setting is trial 0 of every arm, and nothing else in a config changes
    assert res.arms["a"].paper == {"lr": 0.01, "depth": 2, "opt.kind": "sgd"}
    assert res.arms["a"].config["opt"]["momentum"] == 0.0 and res.arms["a"].config["max_epochs"] == 3
    rows = res.trials.to_pylist()
    assert rows[0]["paper_setting"] and json.loads(rows[0]["params"]) == res.arms["a"].paper
    assert res.trials.schema.equals(TRIALS_SCHEMA)
    assert sum(r["chosen"] for r in rows) == 2  # one per arm


def test_search_is_deterministic_for_a_sampler_seed():
    a, b = study(n_trials=12), study(n_trials=12)
    assert a.trials.equals(b.trials) and a.to_json() == b.to_json()


def test_arm_without_space_keeps_the_paper_setting():
    res = study(n_trials=5, spaces={"a": SPACE, "b": {}})
    assert res.arms["b"].tuned == {} and res.arms["b"].config == {**SETTING}
    assert res.to_json()["arms"]["b"]["tuned_is_paper"]


# --------------------------------------------------------------------------------------------
# Equal budgets
# --------------------------------------------------------------------------------------------


def test_every_arm_gets_the_same_trials_epochs_and_seeds():
    seen: dict[str, set] = {"a": set(), "b": set()}

    def spy(arm, config, seed, val):
        seen[arm].add((seed, config["max_epochs"]))
        return quadratic(arm, config, seed, val)

    settings = {"a": SETTING, "b": {**SETTING, "max_epochs": 7}}  # unequal epochs in the settings
    with pytest.raises(BudgetError, match="different epochs"):
        study(n_trials=4, settings=settings, fit_score=spy)
    res = run_study(settings, {"a": SPACE, "b": {}}, TuningBudget(n_trials=4, max_epochs=2, seeds=(0, 1)), spy,
                    val={"target": -1.5})
    assert seen["a"] == seen["b"] == {(0, 2), (1, 2)}  # both arms: the budget's epochs and seeds
    assert res.arms["b"].config["max_epochs"] == 7  # the final run trains as at the paper's settings
    counts = {a: sum(r["arm"] == a for r in res.trials.to_pylist()) for a in ("a", "b")}
    assert counts == {"a": 4, "b": 4}
    check_equal_budget(res.trials, res.budget)


def test_an_arm_cannot_search_its_epochs_or_seeds():
    with pytest.raises(ReservedHyperparameterError, match="tuning.spaces.a.max_epochs"):
        study(spaces={"a": {**SPACE, "max_epochs": IntRange(low=1, high=30)}, "b": {}})


def test_an_arm_that_trains_more_epochs_than_the_budget_is_refused():
    def greedy(arm, config, seed, val):
        score, epochs = quadratic(arm, config, seed, val)
        return score, epochs + (arm == "b")

    with pytest.raises(BudgetError, match="arm 'b' trained 4 epochs .* budget is 3"):
        study(n_trials=3, fit_score=greedy)


def test_a_trials_table_with_more_trials_for_one_arm_is_refused():
    res = study(n_trials=3)
    extra = pa.Table.from_pylist([{**res.trials.to_pylist()[-1], "trial": 3}], schema=TRIALS_SCHEMA)
    with pytest.raises(BudgetError, match="unequal tuning budgets"):
        check_equal_budget(pa.concat_tables([res.trials, extra]))
    with pytest.raises(BudgetError, match="the budget is 5 trials"):
        check_equal_budget(res.trials, TuningBudget(n_trials=5, seeds=(0, 1)))


# --------------------------------------------------------------------------------------------
# Validation for selection, test for the final number
# --------------------------------------------------------------------------------------------


def assert_selected_on_val(res, val):
    """The chosen lr of arm "a" is the validation optimum 10**target."""
    lr = res.arms["a"].config["lr"]
    assert abs(lr - 10 ** val["target"]) / 10 ** val["target"] < 0.35, lr


def test_selection_sees_only_validation_data():
    val, test = {"target": -1.5}, {"target": -3.5}  # different optima on val and test
    seen = []

    def spy(arm, config, seed, split):
        seen.append(split)
        return quadratic(arm, config, seed, split)

    res = study(n_trials=40, fit_score=spy, val=val)
    assert all(split is val for split in seen)
    assert_selected_on_val(res, val)
    # the final number: the chosen configuration scored on test, once
    final = quadratic("a", res.arms["a"].config, 0, test)[0]
    assert final < quadratic("a", {**SETTING, "lr": 10 ** test["target"], "depth": 5, "opt": {"kind": "adam"}}, 0, test)[0]


def test_a_planted_leak_fails_the_selection_check():
    val, test = {"target": -1.5}, {"target": -3.5}

    def leaky(arm, config, seed, split):  # PLANTED LEAK: scores every trial on test
        return quadratic(arm, config, seed, test)

    res = study(n_trials=40, fit_score=leaky, val=val)
    with pytest.raises(AssertionError):
        assert_selected_on_val(res, val)


def test_a_selection_stage_wired_to_test_data_is_refused():
    check_selection_inputs("tune", {"train": "prepare.train", "val": "prepare.val", "teacher": "train_teacher.weights"})
    with pytest.raises(TestLeakError, match=r"stage 'tune' selects hyperparameters but takes test data \['prepare.test'\]"):
        check_selection_inputs("tune", {"train": "prepare.train", "val": "prepare.test"})
    with pytest.raises(TestLeakError):
        check_selection_inputs("tune", {"test": "select_old.val"})


# --------------------------------------------------------------------------------------------
# Bad search spaces: named errors
# --------------------------------------------------------------------------------------------


class ToyParams(BaseModel):
    """The params model the toy arms' configurations must satisfy."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(gt=0)
    depth: int = Field(ge=1)
    opt: dict
    max_epochs: int
    seeds: list[int]


def validate(arm, config):
    ToyParams(**config)


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        ({"type": "float", "low": 1.0, "high": 0.1}, EmptyRangeError, "low = 1.0 >= high = 0.1"),
        ({"type": "int", "low": 3, "high": 3}, EmptyRangeError, "empty range"),
        ({"type": "categorical", "choices": ["sgd"]}, EmptyRangeError, "at least 2 choices"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, LogScaleError, r"log = true over \[0.0, 1.0\]"),
        ({"type": "int", "low": -2, "high": 4, "log": True}, LogScaleError, "low > 0"),
    ],
)
def test_bad_ranges_give_named_errors(raw, error, match):
    model = {"float": FloatRange, "int": IntRange, "categorical": Choice}[raw["type"]]
    with pytest.raises(ValidationError, match=error.__name__) as e:
        model.model_validate(raw)
    assert e.match(match)
    # the same error, named, through a params file section (key path included)
    with pytest.raises(ParamsError, match=rf"toy.spaces.kd.lr.*{error.__name__}"):
        validate_section("toy", TuningParams, {"spaces": {"kd": {"lr": raw}}})


def test_unknown_hyperparameter_names_the_arm_and_its_params():
    with pytest.raises(UnknownHyperparameterError, match=r"tuning.spaces.a.opt.beta.*arm 'a' has no.*'opt.momentum'"):
        check_spaces({"a": {"opt.beta": FloatRange(low=0, high=1)}}, {"a": SETTING}, validate)
    with pytest.raises(UnknownHyperparameterError, match=r"missing \['b'\]"):
        check_spaces({"a": {}}, {"a": SETTING, "b": SETTING})


def test_paper_setting_must_lie_inside_the_space():
    with pytest.raises(SettingOutsideSpaceError, match=r"tuning.spaces.a.lr: the paper's setting 0.01"):
        check_spaces({"a": {"lr": FloatRange(low=0.1, high=1.0)}}, {"a": SETTING})
    with pytest.raises(SettingOutsideSpaceError, match="opt.kind"):
        check_spaces({"a": {"opt.kind": Choice(choices=("adam", "rmsprop"))}}, {"a": SETTING})
    with pytest.raises(SettingOutsideSpaceError, match="depth"):  # an int setting, a float space
        check_spaces({"a": {"depth": IntRange(low=1, high=3)}}, {"a": {**SETTING, "depth": 2.5}})


def test_space_endpoints_are_checked_against_the_params_model():
    with pytest.raises(InvalidSpaceError, match=r"tuning.spaces.a.depth = 0 is not valid for arm 'a'"):
        check_spaces({"a": {"depth": IntRange(low=0, high=4)}}, {"a": SETTING}, validate)


# --------------------------------------------------------------------------------------------
# Trial cache
# --------------------------------------------------------------------------------------------


def test_trials_are_cached_by_content(tmp_path):
    store = TrialStore(tmp_path / "trials")
    first = study(n_trials=6, store=store)
    assert first.stats["fits_computed"] > 0
    again = study(n_trials=6, store=store)
    assert again.stats["fits_computed"] == 0 and again.to_json() == first.to_json()
    longer = study(n_trials=8, store=store)  # the seeded sampler replays the first 6 trials
    assert longer.trials.filter(pc.less(longer.trials["trial"], 6)).drop(["chosen"]).equals(
        first.trials.drop(["chosen"])
    )
    assert 0 < longer.stats["fits_computed"] <= 2 * 2 * 2  # 2 new trials x 2 seeds x 2 arms
    other = study(n_trials=6, store=store, val={"target": -2.0})  # other validation data: new keys
    assert other.stats["fits_computed"] == first.stats["fits_computed"]
    for f in (tmp_path / "trials").rglob("*.json"):  # damaged records are recomputed
        f.write_text("{")
    assert study(n_trials=6, store=store).to_json() == first.to_json()


def test_content_digest_tracks_tables_and_tensors():
    t = pa.table({"x": [1.0, 2.0]})
    assert content_digest(t) == content_digest(pa.table({"x": [1.0, 2.0]}))
    assert content_digest(t) != content_digest(pa.table({"x": [1.0, 2.5]}))
    w = {"w": torch.zeros(2, 2)}
    assert content_digest(w) != content_digest({"w": torch.zeros(4)})
    assert content_digest(w) != content_digest({"w": torch.ones(2, 2)})


# --------------------------------------------------------------------------------------------
# Verdicts and sanity checks
# --------------------------------------------------------------------------------------------


def test_a_claim_is_robust_only_when_both_verdicts_agree():
    vs = two_verdicts(
        {"ls beats kd": "reproduced", "dkd": "not reproduced", "x": "reproduced"},
        {"ls beats kd": "not reproduced", "dkd": "not reproduced", "x": "reproduced"},
    )
    assert [(v.robust, v.status) for v in vs] == [
        (False, "depends on tuning"), (True, "robust"), (True, "robust")
    ]
    with pytest.raises(ValueError, match="different claims"):
        two_verdicts({"a": "reproduced"}, {"b": "reproduced"})


def test_undertuned_baselines_are_flagged():
    values = {"ce": {0: 0.48, 1: 0.49}, "kd": {0: 0.44, 1: 0.45}, "kd_ls": {0: 0.52, 1: 0.50}}
    rules = [FloorRule("kd", "ce", "a distilled student below the student trained alone"),
             FloorRule("kd_ls", "ce", "a distilled student below the student trained alone")]
    flags = undertuned(rules, values)
    assert [f.rule.arm for f in flags] == ["kd"]
    assert flags[0].diff == pytest.approx(-0.04)
    assert "kd (0.445) is 4.00 pts below ce (0.485)" in flags[0].message()
    with pytest.raises(ValueError, match="no values for 'finetune'"):
        undertuned([FloorRule("finetune", "ce", "x")], values)
