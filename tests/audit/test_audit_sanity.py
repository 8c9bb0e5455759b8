"""Sanity properties of the MIA pipeline on tiny real models (issue #8).

1. members = non-members by construction -> AUC ~ 0.5 within its CI;
2. a heavily overfit model -> clearly higher AUC;
3. LiRA online beats the loss attack at low FPR (8 shadow MLPs on digits).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from models import ModelSpec
from tasks.audit import shadows
from tasks.papers import mia_benchmark as mb
from tasks.data_prep import DataParams, prepare
from tasks.audit import mia
from tasks.train import OptimParams, fit, init_model, torch_threads


def _fit_one(train: pa.Table, val: pa.Table, epochs: int, hidden=(128,), seed: int = 0):
    model = init_model(ModelSpec(hidden=hidden), train, 10, seed)
    with torch_threads(1):
        fit(model, OptimParams(max_epochs=epochs, batch_size=32, lr=3e-3), train, val, seed)
    return model


@pytest.fixture(scope="module")
def mnist1d():
    return prepare(DataParams(dataset="mnist1d", num_samples=1200, val_fraction=0.3, test_fraction=0.3))


def test_members_equal_nonmembers_gives_chance_auc(mnist1d) -> None:
    # The target never sees the candidates; "members" are a random half of them, so no
    # attack can tell the halves apart and the AUC CI must contain 0.5.
    model = _fit_one(mnist1d["train"], mnist1d["val"], epochs=20)
    cand = mnist1d["test"]
    rng = np.random.default_rng(0)
    is_member = rng.permutation(cand.num_rows) < cand.num_rows // 2
    inputs = shadows.attack_inputs(model, cand)
    for name in ("loss", "modified_entropy", "grad_norm"):
        a, lo, hi = mia.auc_ci(mia.run_attack(name, inputs), is_member, n_boot=300)
        assert lo <= 0.5 <= hi, (name, a, lo, hi)


def test_overfit_model_leaks(mnist1d) -> None:
    # 200 training examples of a hard task, trained to zero loss: members are obvious.
    train = mnist1d["train"].slice(0, 200)
    model = _fit_one(train, mnist1d["val"], epochs=150, hidden=(256,))
    res = shadows.audit_models(model, train, mnist1d["test"].slice(0, 200), n_boot=300)
    rows = {r["attack"]: r for r in res["metrics"].to_pylist()}
    assert rows["loss"]["auc_lo"] > 0.7, rows["loss"]
    assert rows["grad_norm"]["auc_lo"] > 0.7, rows["grad_norm"]


def test_lira_online_beats_loss_at_low_fpr() -> None:
    data = prepare(DataParams(dataset="digits", max_samples=700, val_fraction=0.3, test_fraction=0.1))
    params = mb.MIAParams(
        attacks=("loss", "lira_online"),
        n_shadow=8,
        model=ModelSpec(hidden=(256,)),
        optim=OptimParams(max_epochs=40, batch_size=32, lr=2e-3),
        fix_variance=True,
        n_boot=100,
    )
    out = mb.mia_audit(params, pool=data["train"], population=data["val"])
    rows = {r["attack"]: r for r in out["metrics"].to_pylist()}
    assert rows["lira_online"]["tpr_at_0.01_fpr"] > rows["loss"]["tpr_at_0.01_fpr"] + 0.02
    assert rows["lira_online"]["auc"] > rows["loss"]["auc"]
    ids, keep = shadows.membership_from_table(out["membership"])
    assert keep.shape == (9, data["train"].num_rows) and (keep.sum(0) == 4).all()
    assert out["scores"].column("is_member").to_pylist() == keep[0].tolist()


def test_compression_audit_composes_nm_pruning() -> None:
    from tasks.sparsity.nm import PruneParams

    data = prepare(DataParams(dataset="digits", max_samples=300))
    p = mb.MIAParams(attacks=("loss",), n_shadow=0, model=ModelSpec(hidden=(64,)),
                        optim=OptimParams(max_epochs=10, lr=3e-3), n_boot=20)
    membership = mb.membership_stage(p, pool=data["train"])["membership"]
    trained = mb.shadows_stage(p, pool=data["train"], membership=membership, val=data["val"])
    cp = mb.CompressionAuditParams(prune=PruneParams(patterns=("2:4",)), finetune=OptimParams(max_epochs=1), n_boot=20)
    res = mb.compression_audit_stage(
        {"mia.digits": p, "compress": cp}, weights=trained["weights"], pool=data["train"],
        membership=membership, val=data["val"], test=data["test"],
    )["results"].to_pylist()
    names = [r["model"] for r in res]
    assert names[0] == "dense" and any(n.startswith("pruned/") for n in names) and any(n.startswith("finetuned/") for n in names)
    for r in res:
        assert 0 <= r["loss_auc_lo"] <= r["loss_auc"] <= r["loss_auc_hi"] <= 1 and 0 <= r["test_acc"] <= 1
