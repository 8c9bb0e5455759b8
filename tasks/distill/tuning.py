"""Fair comparisons of distillation arms: each arm tuned on the same budget (issue #17).

A distillation paper's arms share one :class:`~tasks.distill.distill.DistillSetup` and differ in
their loss; here each arm is also re-tuned (its learning rate, temperature, loss weights, ...)
with the same budget as every other arm, by :func:`tasks.platform.tuning.run_study`, and judged again.
The stages it adds to a paper (:func:`tuning_stages`):

* ``tune``: searches every arm's space (``params.yaml``: ``<paper>.tuning``) on the
  validation split; its inputs are the training and validation splits and the teacher(s),
  never the test split (:func:`tasks.platform.tuning.check_selection_inputs`). One trial trains one
  student per budget seed through the same :func:`tasks.distill.distill.distill` core as the arm.
* ``distill_<arm>_tuned``: the arm at its chosen configuration, trained exactly as the arm at
  the paper's settings (epochs, seeds, test evaluation): the tuned verdict's numbers.
* ``report_paper`` / ``report_tuned``: the paper's report core on both sets of arms, merged by
  ``report`` (:func:`tasks.platform.tuning_report.merge_reports`) with both verdicts, the hyperparameters
  and the sanity checks (a distilled student below the student trained alone).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import pyarrow as pa
import torch
from pydantic import BaseModel

from tasks.distill.arms import (
    DISTILL_OUTPUTS,
    REPORT_OUTPUTS,
    Arm,
    arm_settings,
    arm_stage,
    data_inputs,
    prepare_stage,
    validate_config,
)
from tasks.distill.distill import DistillSetup, distill
from tasks.evaluation.seeds import per_seed
from tasks.platform.errors import ArtifactError
from tasks.platform.stage import Stage, shared_code_digest
from tasks.platform.tuning import (
    TRIALS_SCHEMA,
    FloorRule,
    TrialStore,
    TuningParams,
    check_selection_inputs,
    content_digest,
    run_study,
    with_values,
)
from tasks.platform.tuning_report import merge_reports
from tasks.train import train

TUNE_OUTPUTS = {"trials": "trials.parquet", "tuned": "tuned.json"}


def _sections(params: Mapping[str, BaseModel]) -> tuple[DistillSetup, dict[str, Arm], TuningParams | None]:
    arms = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("arms.")}
    return params["distill"], arms, params.get("tuning")  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Stage cores
# --------------------------------------------------------------------------------------------


def tune(
    params: Mapping[str, BaseModel],
    *,
    train: pa.Table,
    val: pa.Table,
    teacher_weights: dict[str, torch.Tensor],
    aux_teacher_weights: dict[str, torch.Tensor] | None = None,
    student_weights: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Stage core of ``tune``: ``params`` = ``{"distill", "tuning", "arms.<arm>" for each arm}``.

    Returns ``trials`` (:data:`tasks.platform.tuning.TRIALS_SCHEMA`) and ``tuned`` (per arm the paper's
    and the chosen values, their validation scores and the chosen full configuration).
    """
    setup, arms, tuning = _sections(params)
    assert tuning is not None
    fixed = {"teacher_weights": teacher_weights, "aux_teacher_weights": aux_teacher_weights,
             "student_weights": student_weights}

    def fit_score(arm: str, config: dict[str, Any], seed: int, val_split: pa.Table) -> tuple[float, int]:
        p = validate_config(arm, {**config, "seeds": [seed]})
        m = distill(p, train=train, val=val_split, **fixed)["metrics"]["seeds"][str(seed)]
        return m["val"]["acc"], len(m["history"])

    context = content_digest({"train": train, **fixed, "code": shared_code_digest()})
    res = run_study(arm_settings(setup, arms), tuning.spaces, tuning.budget, fit_score, val=val,
                    context=context, store=TrialStore.default(), validate=validate_config)
    return {"trials": res.trials, "tuned": res.to_json()}


def distill_tuned_arm(params: Mapping[str, BaseModel], *, tuned: Mapping[str, Any], **inputs: Any) -> dict[str, Any]:
    """Stage core of ``distill_<arm>_tuned``: the arm at the configuration ``tune`` chose.

    ``params`` = ``{"distill", "arms.<arm>"}``; the chosen configuration must be this arm's
    setting with only its searched values changed (else ``tuned`` is stale).
    """
    setup, arms, _ = _sections(params)
    ((arm, spec),) = arms.items()
    if arm not in tuned.get("arms", {}):
        raise ArtifactError(f"tuned.json has no arm {arm!r}; arms: {sorted(tuned.get('arms', {}))}")
    entry = tuned["arms"][arm]
    expected = with_values(arm_settings(setup, {arm: spec})[arm], entry["tuned"])
    if expected != entry["config"]:
        raise ArtifactError(f"tuned.json's configuration of arm {arm!r} does not match its params: rerun tune")
    return distill(validate_config(arm, entry["config"]), **inputs)


# --------------------------------------------------------------------------------------------
# PLATFORM: the stages a paper adds
# --------------------------------------------------------------------------------------------

def test_acc(arm: str, metrics: Mapping[str, Any]) -> dict[int, float]:
    """``{seed: test accuracy}`` of an arm's distill metrics (the sanity checks' values)."""
    return per_seed(metrics, "test.acc")


def student_floors(arms: tuple[str, ...], alone: str = "ce") -> tuple[FloorRule, ...]:
    """Every distilled arm should not fall below the student trained alone (``alone``)."""
    return tuple(FloorRule(a, alone, "a distilled student below the student trained alone") for a in arms if a != alone)


def tuning_stages(arms: tuple[str, ...], teacher: str, aux_teacher: str | None = None) -> tuple[Stage, ...]:
    """``tune`` and ``distill_<arm>_tuned`` for each arm (after the arms at the paper's settings)."""
    teachers = {"teacher_weights": teacher, **({"aux_teacher_weights": aux_teacher} if aux_teacher else {})}
    inputs = {**data_inputs(test=False), **teachers}
    check_selection_inputs("tune", inputs)
    tune_stage = Stage("tune", tune, params=("distill", "tuning", *(f"arms.{a}" for a in arms)), inputs=inputs,
                       outputs=TUNE_OUTPUTS, schemas={"trials": TRIALS_SCHEMA})
    tuned = tuple(
        Stage(f"distill_{a}_tuned", distill_tuned_arm, params=("distill", f"arms.{a}"),
              inputs={**data_inputs(), **teachers, "tuned": "tune.tuned"}, outputs=DISTILL_OUTPUTS)
        for a in arms
    )
    return (tune_stage, *tuned)


def report_stages(
    report: Callable[..., Any],
    params: tuple[str, ...],
    paper_inputs: Mapping[str, str],
    tuned_inputs: Mapping[str, str],
    outputs: Mapping[str, str],
    arms: tuple[str, ...],
    floors: tuple[FloorRule, ...] = (),
) -> tuple[Stage, ...]:
    """``report_paper`` and ``report_tuned`` (the paper's report core on each set of arms) and
    ``report``, which merges them (:func:`tasks.platform.tuning_report.merge_reports`)."""
    merge_inputs = {
        **{f"paper_{o}": f"report_paper.{o}" for o in outputs},
        "tuned_claims": "report_tuned.claims",
        "study": "tune.tuned",
        **{f"paper_arm_{a}": f"distill_{a}.metrics" for a in arms},
        **{f"tuned_arm_{a}": f"distill_{a}_tuned.metrics" for a in arms},
    }
    if "summary" in outputs:
        merge_inputs["tuned_summary"] = "report_tuned.summary"
    return (
        Stage("report_paper", report, params=params, inputs=paper_inputs, outputs=outputs),
        Stage("report_tuned", report, params=params, inputs=tuned_inputs, outputs=outputs),
        Stage("report", functools.partial(merge_reports, floors=floors, values=test_acc), params=("tuning",),
              inputs=merge_inputs, outputs=outputs),
    )


def kd_stages(arms: tuple[str, ...], report: Callable[..., Any]) -> tuple[Stage, ...]:
    """A logit-KD paper: prepare -> train_teacher -> distill_<arm> for each arm -> tune ->
    distill_<arm>_tuned for each arm -> report_paper, report_tuned -> report."""
    return (
        prepare_stage(),
        Stage("train_teacher", train, params=("teacher",), inputs=data_inputs(test=False),
              outputs={"weights": "weights.safetensors", "metrics": "metrics.json"}),
        *(arm_stage(a, "train_teacher.weights") for a in arms),
        *tuning_stages(arms, "train_teacher.weights"),
        *report_stages(report, ("distill",), {f"metrics_{a}": f"distill_{a}.metrics" for a in arms},
                       {f"metrics_{a}": f"distill_{a}_tuned.metrics" for a in arms}, REPORT_OUTPUTS, arms,
                       student_floors(arms)),
    )
