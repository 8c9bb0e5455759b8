"""Distillation stage: train a student from one or two teachers with a registered loss.

The student is either a fresh model of ``params.student`` (a smaller dense network) or,
when ``student_weights`` is given, starts from those weights with every exact zero of a
weight matrix held at zero (an N:M-pruned student: distillation as the recovery step after
pruning). Training goes through :func:`tasks.train.fit` (Lightning Fabric, seeded, deterministic
on CPU); the loss comes from the registry in :mod:`tasks.distill.losses.kd`.

Weights of several seeds are packed in one safetensors dict (:func:`tasks.train.pack_seeds`).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import torch
from pydantic import ConfigDict, Field, field_validator, model_validator
from torch import nn

from models import ModelSpec
from tasks.data_prep import num_features
from tasks.distill.losses import check_loss_params, get_loss
from tasks.platform.errors import ArtifactError, ParamsError, ReprolabError
from tasks.train import (
    OptimParams,
    accuracy_and_loss,
    fit,
    head_classes,
    init_model,
    load_model,
    masks_from_zeros,
    num_classes,
    pack_seeds,
    pick_seed,
    select_group,
    unpack_seeds,
)
from tasks.platform.params import Seed, Seeds


class DistillSetup(OptimParams):
    """Everything about a distillation run except the loss (shared by a paper's arms).

    Attributes:
        teacher: architecture of the teacher weights (``teacher_weights`` input).
        aux_teacher: architecture of a second teacher (``aux_teacher_weights``): another
            teacher to fuse (GLD), or the old model of a model update (may have fewer classes).
        student: architecture of the student (``mlp_dual_head`` for the dual-head loss).
        seeds: one student per seed (init + data order).
        teacher_seed: use this teacher seed for every student; ``None`` pairs student seed s
            with teacher seed ``s + teacher_seed_offset``.
        teacher_seed_offset: see ``teacher_seed`` (main teacher only; e.g. a reference
            model trained with other seeds than the students).
        student_variant: when the ``student_weights`` artifact holds several variants
            (``nm_sparsity``'s prune output, keys ``"<variant>/<seed>.<param>"``, e.g.
            ``"2:4_v1"``), the one to start from.
        fit_seed_offset: the student of seed ``s`` trains with data order/seed ``s + offset``
            (``nm_sparsity`` uses its fine-tuning offset, so KD recovery and fine-tuning see
            the same batches and differ only in the loss).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    teacher: ModelSpec = ModelSpec()
    aux_teacher: ModelSpec | None = None
    student: ModelSpec = ModelSpec(hidden=(32,))
    seeds: Seeds = (0, 1, 2)
    teacher_seed: Seed | None = None
    teacher_seed_offset: int = 0
    student_variant: str | None = None
    fit_seed_offset: int = Field(default=0, ge=0)


class DistillParams(DistillSetup):
    """Params of the ``distill`` core: the setup plus the loss.

    Attributes:
        loss: registered loss name (:func:`tasks.distill.losses.registered_losses`).
        loss_params: keyword arguments of that loss (checked against its signature).
    """

    loss: str = "kd"
    loss_params: dict[str, float | int | bool] = Field(default_factory=dict)

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, v: str) -> str:
        get_loss(v)  # raises listing the registered names
        return v

    @model_validator(mode="after")
    def _loss_fits(self):
        check_loss_params(self.loss, dict(self.loss_params))
        entry = get_loss(self.loss)
        if entry.heads == 2 and self.student.arch != "mlp_dual_head":
            raise ValueError(f"loss {self.loss!r} needs a two-head student (student.arch: mlp_dual_head), got {self.student.arch!r}")
        n_teachers = 1 + (self.aux_teacher is not None)
        if entry.min_teachers > n_teachers:
            raise ValueError(f"loss {self.loss!r} needs {entry.min_teachers} teachers; set aux_teacher")
        return self


# --------------------------------------------------------------------------------------------
# PLATFORM: loading teachers / students from packed weights
# --------------------------------------------------------------------------------------------


def _teachers(params: DistillParams, teacher_weights, aux_teacher_weights, in_features: int, n_classes: int):
    """Yield per student seed: the list of frozen teacher modules (main first)."""
    if not teacher_weights:
        raise ArtifactError("missing teacher artifact: teacher_weights is empty or not given")
    sources = [("teacher_weights", params.teacher, unpack_seeds(teacher_weights))]
    if params.aux_teacher is not None:
        if not aux_teacher_weights:
            raise ArtifactError("params.aux_teacher is set but the aux_teacher_weights artifact is missing")
        sources.append(("aux_teacher_weights", params.aux_teacher, unpack_seeds(aux_teacher_weights)))
    elif aux_teacher_weights:
        raise ParamsError("aux_teacher_weights given but params.aux_teacher is not set")

    def build(seed: int) -> list[nn.Module]:
        models = []
        for what, spec, per_seed in sources:
            offset = params.teacher_seed_offset if what == "teacher_weights" else 0
            sd = pick_seed(per_seed, seed + offset if params.teacher_seed is None else params.teacher_seed, what)
            c = head_classes(sd, what)
            if what == "teacher_weights" and c != n_classes:
                raise ParamsError(
                    f"teacher/student class-count mismatch: {what} has {c} classes, the data (and the student) {n_classes}"
                )
            if c > n_classes:
                raise ParamsError(f"{what} has {c} classes, more than the data's {n_classes}")
            m = load_model(spec, sd, in_features, c, what).eval()
            for p in m.parameters():
                p.requires_grad_(False)
            models.append(m)
        return models

    return build


def make_loss_fn(params: DistillParams, teachers: list[nn.Module]):
    """The ``loss_fn(out, y, x)`` for :func:`tasks.train.fit`: runs the frozen
    teachers on the batch and calls the registered loss."""
    entry = get_loss(params.loss)
    kwargs = dict(params.loss_params)

    def loss_fn(out, y, x):
        with torch.no_grad():
            zt = [t(x) for t in teachers]  # each (B, C_t)
        return entry.fn(out, y, zt, **kwargs)

    return loss_fn


# --------------------------------------------------------------------------------------------
# The compute core
# --------------------------------------------------------------------------------------------


def distill(
    params: DistillParams,
    *,
    train: pa.Table,
    val: pa.Table,
    teacher_weights: dict[str, torch.Tensor] | None,
    aux_teacher_weights: dict[str, torch.Tensor] | None = None,
    student_weights: dict[str, torch.Tensor] | None = None,
    test: pa.Table | None = None,
) -> dict[str, Any]:
    """Distil one student per seed.

    Args:
        params: validated :class:`DistillParams`.
        train, val: split tables (``id``, ``label``, ``x``).
        teacher_weights: packed per-seed teacher state_dicts (a ``train`` stage's output).
        aux_teacher_weights: packed weights of the second teacher, if ``params.aux_teacher``.
        student_weights: packed per-seed initial student weights (e.g. N:M-pruned); their
            zero entries become fixed masks. ``None`` = a fresh student per seed.
        test: optional test split, evaluated at the end.

    Returns:
        ``weights``: packed student state_dicts; ``metrics``: per seed the student's final
        val (and test) accuracy/loss, the teacher's, the per-epoch history and the fraction
        of masked weights, plus means over seeds.
    """
    n_classes = num_classes(train, val)
    in_features = num_features(train)
    teachers_for = _teachers(params, teacher_weights, aux_teacher_weights, in_features, n_classes)
    if student_weights and params.student_variant is not None:
        student_weights = select_group(student_weights, params.student_variant, "student_weights")
    student_init = unpack_seeds(student_weights) if student_weights else None
    train_outputs = (lambda m, x: m.forward_heads(x)) if get_loss(params.loss).heads == 2 else None

    per_seed, metrics = {}, {}
    for seed in params.seeds:
        teachers = teachers_for(seed)
        model = init_model(params.student, train, n_classes, seed)
        masks = None
        if student_init is not None:
            sd = pick_seed(student_init, seed, "student_weights")
            model = load_model(params.student, sd, in_features, n_classes, "student_weights")
            masks = masks_from_zeros(sd)
        if train_outputs is not None and not hasattr(model, "forward_heads"):
            raise ParamsError(f"loss {params.loss!r} needs a two-head student; {params.student.arch!r} has one head")
        history = fit(model, params, train, val, seed + params.fit_seed_offset, masks=masks, loss_fn=make_loss_fn(params, teachers), train_outputs=train_outputs)
        per_seed[seed] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        m: dict[str, Any] = {
            "val": accuracy_and_loss(model, val),
            "teacher_val": accuracy_and_loss(teachers[0], val),
            "history": history,
        }
        if masks:
            total = sum(int(mk.numel()) for mk in masks.values())
            m["masked_fraction"] = 1.0 - sum(int(mk.sum()) for mk in masks.values()) / total
            m["masks_held"] = all(
                bool((per_seed[seed][k][~mk] == 0).all()) for k, mk in masks.items()
            )
        if test is not None:
            m["test"] = accuracy_and_loss(model, test)
            m["teacher_test"] = accuracy_and_loss(teachers[0], test)
            if len(teachers) > 1 and teachers[1].head.out_features == n_classes:
                m["aux_teacher_test"] = accuracy_and_loss(teachers[1], test)
        metrics[str(seed)] = m
    summary = {
        f"{split}_acc_mean": sum(metrics[str(s)][split]["acc"] for s in params.seeds) / len(params.seeds)
        for split in ("val", "test")
        if test is not None or split == "val"
    }
    return {
        "weights": pack_seeds(per_seed),
        "metrics": {"loss": params.loss, "num_classes": n_classes, **summary, "seeds": metrics},
    }


def validate_params(raw: dict) -> DistillParams:
    """Build :class:`DistillParams` from a dict, re-raising errors as :class:`ParamsError`."""
    from pydantic import ValidationError

    try:
        return DistillParams(**raw)
    except ValidationError as e:
        raise ParamsError(f"distill params: {e}") from e
    except ReprolabError as e:
        raise ParamsError(f"distill params: {e}") from e
