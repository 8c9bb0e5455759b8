"""Shared pieces of the distillation paper pipelines: arms, their stage core and stage lists.

A distillation paper compares *arms* (students trained with different losses) on the same
data, teacher(s), student size, seeds and budget. ``params.yaml`` gives one ``distill``
section (:class:`DistillSetup`, what every arm shares) and an ``arms`` mapping
(:class:`Arm`, what differs); each arm is one stage whose core is :func:`distill_arm`.

Reports compare arms on per-seed metrics with 95 % bootstrap CIs through
:mod:`tasks.evaluation.seeds` (``arm_table``, ``comparison_table``). Comparisons between two
arms are *paired* by seed (same seed = same init, data order and teacher), so the CI is that
of the mean per-seed difference.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.data_prep import DataParams, prepare, split_schema_check
from tasks.distill.distill import DistillParams, DistillSetup, distill
from tasks.platform.errors import ParamsError, ReprolabError
from tasks.platform.stage import Stage
from tasks.platform.params import validation_lines
from tasks.platform.tuning import TuningParams, check_spaces
from tasks.train import TrainParams


class Arm(BaseModel):
    """One arm: the loss, its params, and (optionally) another student architecture name.

    Attributes:
        loss: registered loss name.
        loss_params: its keyword arguments.
        student_arch: overrides ``distill.student.arch`` (``mlp_dual_head`` for dual-head KD).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    loss: str
    loss_params: dict[str, float | int | bool] = Field(default_factory=dict)
    student_arch: str | None = None


def arm_params(setup: DistillSetup, arm: Arm, name: str = "?") -> DistillParams:
    """The full :class:`DistillParams` of one arm; errors name the arm."""
    student = setup.student if arm.student_arch is None else setup.student.model_copy(update={"arch": arm.student_arch})
    fields = {name: getattr(setup, name) for name in type(setup).model_fields}
    try:
        return DistillParams(**{**fields, "student": student}, loss=arm.loss, loss_params=dict(arm.loss_params))
    except ValidationError as e:  # one readable line per problem, keyed under the arm
        raise ParamsError("\n  ".join(validation_lines(f"arms.{name}", e))) from None
    except (ValueError, ReprolabError) as e:
        raise ParamsError(f"arms.{name}: {e}") from e


def check_arms(setup: DistillSetup, arms: Mapping[str, Arm]) -> None:
    """Validate every arm against the shared setup (call from a paper's params validator)."""
    for name, arm in arms.items():
        arm_params(setup, arm, name)
    if len(setup.seeds) < 2:
        raise ParamsError(f"distill.seeds = {list(setup.seeds)}: need >= 2 seeds for confidence intervals")


def arm_settings(setup: DistillSetup, arms: Mapping[str, Arm]) -> dict[str, dict[str, Any]]:
    """``{arm: its full DistillParams as JSON}``: the paper's setting a tuning search starts from."""
    return {name: arm_params(setup, arm, name).model_dump(mode="json") for name, arm in arms.items()}


def validate_config(arm: str, config: Mapping[str, Any]) -> DistillParams:
    """The :class:`DistillParams` of one arm's (tuned) configuration; errors name the arm."""
    try:
        return DistillParams.model_validate(dict(config))
    except ValueError as e:
        raise ParamsError(f"arms.{arm}: {e}") from e


def check_tuning(setup: DistillSetup, arms: Mapping[str, Arm], tuning: TuningParams) -> None:
    """Cross-checks of a paper's ``tuning`` section against its arms (issue #17; see
    :mod:`tasks.distill.tuning`): every arm has a valid space containing the paper's setting,
    and the budget's seeds have teachers."""
    check_spaces(tuning.spaces, arm_settings(setup, arms), validate_config)
    missing = sorted(set(tuning.budget.seeds) - set(setup.seeds))
    if missing:
        raise ValueError(
            f"tuning.budget.seeds = {list(tuning.budget.seeds)}: seed(s) {missing} not in distill.seeds = "
            f"{list(setup.seeds)} (the teachers are trained for those)"
        )


def distill_arm(params: Mapping[str, BaseModel], **inputs: Any) -> dict[str, Any]:
    """Stage core of one arm: ``params`` = ``{"distill": DistillSetup, "arms.<name>": Arm}``."""
    setup = params["distill"]
    (key,) = [k for k in params if k.startswith("arms.")]
    return distill(arm_params(setup, params[key], key.split(".", 1)[1]), **inputs)


# --------------------------------------------------------------------------------------------
# Comparisons
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# PLATFORM: params model and stage list shared by the logit-KD papers
# --------------------------------------------------------------------------------------------

SPLITS = {"train": "train.parquet", "val": "val.parquet", "test": "test.parquet"}
DISTILL_OUTPUTS = {"weights": "weights.safetensors", "metrics": "metrics.json"}
REPORT_OUTPUTS = {"report": "report.md", "claims": "claims.json", "summary": "summary.parquet", "metrics": "metrics.json"}


def check_teacher_seeds(teacher: TrainParams, setup: DistillSetup, what: str = "teacher") -> None:
    """Every student seed must find its teacher seed (``seed + offset`` or ``teacher_seed``)."""
    need = {setup.teacher_seed} if setup.teacher_seed is not None else {s + setup.teacher_seed_offset for s in setup.seeds}
    missing = sorted(need - set(teacher.seeds))
    if missing:
        raise ValueError(f"{what}.seeds = {list(teacher.seeds)} lacks the seed(s) {missing} that distill.seeds need")
    if teacher.model != setup.teacher:
        raise ValueError(f"distill.teacher {setup.teacher} differs from {what}.model {teacher.model}")


def check_paper(
    setup: DistillSetup,
    arms: Mapping[str, Arm],
    expected: tuple[str, ...],
    teacher: tuple[TrainParams, str],
    aux_teacher: tuple[TrainParams, str] | None = None,
) -> None:
    """Cross-section checks of a distillation paper's params (run before any work).

    The arm names must be exactly ``expected``; the teacher(s) trained by the paper must be
    the architectures ``distill`` loads and have every seed the students need.
    """
    if set(arms) != set(expected):
        raise ValueError(f"arms = {sorted(arms)}: this paper runs exactly the arms {list(expected)}")
    check_teacher_seeds(teacher[0], setup, teacher[1])
    if aux_teacher is not None:
        train_aux, what = aux_teacher
        if setup.aux_teacher != train_aux.model:
            raise ValueError(f"distill.aux_teacher must equal {what}.model = {train_aux.model}")
        missing = sorted(set(setup.seeds) - set(train_aux.seeds))
        if missing:
            raise ValueError(f"{what}.seeds = {list(train_aux.seeds)} lacks distill seed(s) {missing}")
    check_arms(setup, arms)


class KDPaperParams(BaseModel):
    """Params of a logit-KD paper: data, teacher training, shared distill setup, arms, tuning.

    Subclasses set ``ARMS``: the arm names the paper's stage list and report expect.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    ARMS: ClassVar[tuple[str, ...]] = ()

    data: DataParams = DataParams(dataset="mnist1d")
    teacher: TrainParams = TrainParams()
    distill: DistillSetup = DistillSetup()
    arms: dict[str, Arm] = Field(default_factory=dict)
    tuning: TuningParams

    @model_validator(mode="after")
    def _consistent(self):
        check_paper(self.distill, self.arms, self.ARMS, (self.teacher, "teacher"))
        check_tuning(self.distill, self.arms, self.tuning)
        return self


def prepare_stage() -> Stage:
    return Stage("prepare", prepare, params=("data",), outputs=SPLITS, schemas={s: split_schema_check for s in SPLITS})


def data_inputs(test: bool = True) -> dict[str, str]:
    return {"train": "prepare.train", "val": "prepare.val", **({"test": "prepare.test"} if test else {})}


def arm_stage(arm: str, teacher: str, aux_teacher: str | None = None) -> Stage:
    """``distill_<arm>``: one student per seed from ``teacher`` (``"<stage>.weights"``)."""
    inputs = {**data_inputs(), "teacher_weights": teacher}
    if aux_teacher:
        inputs["aux_teacher_weights"] = aux_teacher
    return Stage(f"distill_{arm}", distill_arm, params=("distill", f"arms.{arm}"), inputs=inputs, outputs=DISTILL_OUTPUTS)
