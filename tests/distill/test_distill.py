"""The distill core on tiny digits: dense and N:M-masked students, seeding, bad params."""

import pytest
import torch

from models import ModelSpec
from tasks.platform import artifacts
from tasks.data_prep import DataParams, prepare
from tasks.distill.distill import DistillParams, distill, validate_params
from tasks.train import masks_from_zeros
from tasks.platform.errors import ArtifactError, ParamsError
from tasks.train import TrainParams, pack_seeds, train, unpack_seeds

TINY = dict(max_epochs=2, batch_size=32, lr=1e-2)


@pytest.fixture(scope="module")
def data():
    return prepare(DataParams(dataset="digits", max_samples=400, seed=0))


@pytest.fixture(scope="module")
def teacher(data):
    return train(TrainParams(model=ModelSpec(hidden=(64,)), seeds=(0, 1), **TINY), train=data["train"], val=data["val"])


def params(**kw):
    base = dict(teacher=ModelSpec(hidden=(64,)), student=ModelSpec(hidden=(16,)), seeds=(0, 1), **TINY)
    base.update(kw)
    return DistillParams(**base)


def test_dense_student_two_seeds(data, teacher):
    out = distill(params(loss="kd"), train=data["train"], val=data["val"], teacher_weights=teacher["weights"], test=data["test"])
    per_seed = unpack_seeds(out["weights"])
    assert sorted(per_seed) == [0, 1]
    assert per_seed[0]["features.0.weight"].shape == (16, 64)
    m = out["metrics"]
    assert m["loss"] == "kd" and m["num_classes"] == 10
    for s in ("0", "1"):
        assert len(m["seeds"][s]["history"]) == 2
        assert 0.0 <= m["seeds"][s]["test"]["acc"] <= 1.0
        assert m["seeds"][s]["teacher_val"] == teacher["metrics"]["seeds"][s]["val"]
    assert 0.0 <= m["test_acc_mean"] <= 1.0
    # the student learned something in 2 epochs (chance is 0.1)
    assert m["val_acc_mean"] > 0.3


def test_same_seed_same_student(data, teacher):
    p = params(loss="pld", seeds=(1,))
    a = distill(p, train=data["train"], val=data["val"], teacher_weights=teacher["weights"])
    b = distill(p, train=data["train"], val=data["val"], teacher_weights=teacher["weights"])
    for k, v in a["weights"].items():
        torch.testing.assert_close(v, b["weights"][k], rtol=0, atol=0)


def nm_prune(sd, n=2, m=4):
    """Keep the n largest |w| of every m consecutive inputs of each weight matrix (test helper)."""
    out = {}
    for k, w in sd.items():
        if w.ndim == 2 and w.shape[1] % m == 0:
            g = w.abs().reshape(w.shape[0], -1, m)
            keep = torch.zeros_like(g, dtype=torch.bool).scatter_(-1, g.topk(n, -1).indices, True)
            out[k] = w * keep.reshape(w.shape)
        else:
            out[k] = w.clone()
    return out


def test_nm_pruned_student_keeps_its_masks(data, teacher):
    per_seed = unpack_seeds(teacher["weights"])
    pruned = pack_seeds({s: nm_prune(sd) for s, sd in per_seed.items()})
    p = params(loss="kd", student=ModelSpec(hidden=(64,)), loss_params={"standardize": True, "temperature": 2.0})
    out = distill(p, train=data["train"], val=data["val"], teacher_weights=teacher["weights"], student_weights=pruned)
    masks = masks_from_zeros(unpack_seeds(pruned)[0])
    assert set(masks) == {"features.0.weight", "head.weight"}
    student = unpack_seeds(out["weights"])
    for s in (0, 1):
        m = out["metrics"]["seeds"][str(s)]
        assert m["masks_held"] is True and m["masked_fraction"] == pytest.approx(0.5)
        w = student[s]["features.0.weight"].reshape(64, -1, 4)
        assert ((w != 0).sum(-1) <= 2).all()  # still 2:4
        # and it trained: surviving weights moved away from the pruned init
        assert not torch.equal(student[s]["features.0.weight"], unpack_seeds(pruned)[s]["features.0.weight"])


def test_dual_head_student(data, teacher):
    p = params(loss="dual_head", student=ModelSpec(arch="mlp_dual_head", hidden=(16,)), seeds=(0,))
    out = distill(p, train=data["train"], val=data["val"], teacher_weights=teacher["weights"])
    assert "0.aux_head.weight" in out["weights"]
    assert out["metrics"]["val_acc_mean"] > 0.2


def test_mpt_with_old_and_new_teachers(data, teacher):
    from tasks.papers.negative_flips import OldClassesParams, select_old_classes

    old_data = select_old_classes(OldClassesParams(n_old=6), train=data["train"], val=data["val"])
    old = train(TrainParams(model=ModelSpec(hidden=(16,)), seeds=(0,), **TINY), train=old_data["train"], val=old_data["val"])
    assert old["weights"]["0.head.weight"].shape[0] == 6
    p = params(loss="mpt", aux_teacher=ModelSpec(hidden=(16,)), seeds=(0,), teacher_seed=0)
    out = distill(p, train=data["train"], val=data["val"], teacher_weights=teacher["weights"], aux_teacher_weights=old["weights"])
    assert out["weights"]["0.head.weight"].shape[0] == 10


# ---------------------------------------------------------------- bad input


def test_unknown_loss_and_bad_temperature_are_params_errors():
    with pytest.raises(ParamsError, match=r"unknown loss 'hinton'.*registered losses"):
        validate_params({"loss": "hinton"})
    with pytest.raises(ParamsError, match="temperature must be > 0, got 0"):
        validate_params({"loss": "kd", "loss_params": {"temperature": 0}})
    with pytest.raises(ParamsError, match=r"temperature must be > 0, got -1"):
        validate_params({"loss": "pld", "loss_params": {"temperature": -1}})
    with pytest.raises(ParamsError, match="extra_forbidden|Extra inputs"):
        validate_params({"loss": "kd", "temprature": 4})
    with pytest.raises(ParamsError, match="two-head student"):
        validate_params({"loss": "dual_head"})
    with pytest.raises(ParamsError, match="needs 2 teachers"):
        validate_params({"loss": "mpt"})


def test_class_count_mismatch(data, teacher):
    sd = {k: v for k, v in teacher["weights"].items()}
    for s in (0, 1):  # a 7-class teacher
        sd[f"{s}.head.weight"] = sd[f"{s}.head.weight"][:7]
        sd[f"{s}.head.bias"] = sd[f"{s}.head.bias"][:7]
    with pytest.raises(ParamsError, match="teacher/student class-count mismatch: teacher_weights has 7 classes, the data"):
        distill(params(), train=data["train"], val=data["val"], teacher_weights=sd)


def test_missing_teacher_artifact(tmp_path, data, teacher):
    with pytest.raises(ArtifactError, match="missing artifact: .*teacher.safetensors"):
        artifacts.read(tmp_path / "teacher.safetensors")
    with pytest.raises(ArtifactError, match="missing teacher artifact"):
        distill(params(), train=data["train"], val=data["val"], teacher_weights=None)
    with pytest.raises(ArtifactError, match=r"teacher_weights has seeds \[0, 1\], but seed 5 is needed"):
        distill(params(seeds=(5,)), train=data["train"], val=data["val"], teacher_weights=teacher["weights"])
    with pytest.raises(ArtifactError, match="weights do not fit mlp"):
        distill(params(teacher=ModelSpec(hidden=(32,))), train=data["train"], val=data["val"], teacher_weights=teacher["weights"])


def test_recovers_the_nm_sparsity_prune_output(data, teacher):
    """The pruned-weights artifact of nm_sparsity's prune stage is a valid student init."""
    from tasks.sparsity import nm

    train_p = TrainParams(model=ModelSpec(hidden=(64,)), seeds=(0, 1), **TINY)
    pruned = nm.prune(
        {"prune": nm.PruneParams(patterns=("2:4",), vectors=(1,)), "train": train_p},
        dense=teacher["weights"],
        train=data["train"],
    )["weights"]
    p = params(loss="kd", student=ModelSpec(hidden=(64,)), student_variant="2:4_v1")
    out = distill(p, train=data["train"], val=data["val"], teacher_weights=teacher["weights"], student_weights=pruned)
    for s in ("0", "1"):
        assert out["metrics"]["seeds"][s]["masks_held"] is True
        assert out["metrics"]["seeds"][s]["masked_fraction"] == pytest.approx(0.5)
    with pytest.raises(ArtifactError, match=r"student_weights has no group '1:8_v1'; groups: \['2:4_v1'\]"):
        distill(params(student=ModelSpec(hidden=(64,)), student_variant="1:8_v1"), train=data["train"],
                val=data["val"], teacher_weights=teacher["weights"], student_weights=pruned)
