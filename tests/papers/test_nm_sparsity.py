"""nm_sparsity's KD recovery (distill_<ds>) and leakage/calibration audit (audit_<ds>) cores."""

import math

import pyarrow as pa
import pytest
import torch

from models import ModelSpec
from tasks.train import unpack_groups
from tasks.platform import artifacts
from tasks.audit.shadows import audit_models, calibration_audit
from tasks.data_prep import DataParams, prepare
from tasks.papers import nm_sparsity as nmr
from tasks.platform.report import Claim
from tasks.sparsity import nm
from tasks.train import OptimParams, TrainParams, init_model, num_classes, train

FT = OptimParams(max_epochs=2, batch_size=32, lr=5e-3)
PATTERNS = ("2:4", "1:8")


@pytest.fixture(scope="module")
def pipeline():
    """prepare -> train -> prune -> finetune -> distill on tiny digits (2 seeds, v = 1 and 8)."""
    data = prepare(DataParams(dataset="digits", max_samples=240))
    tp = TrainParams(model=ModelSpec(hidden=(32, 16)), seeds=(0, 1), max_epochs=3, lr=5e-3)
    dense = train(tp, train=data["train"], val=data["val"])["weights"]
    pruned = nm.prune({"prune": nm.PruneParams(patterns=PATTERNS, vectors=(1, 8)), "train": tp},
                      dense=dense, train=data["train"])["weights"]
    finetuned = nm.finetune({"finetune": FT, "train": tp}, pruned=pruned, train=data["train"], val=data["val"])["weights"]
    kd = nmr.distill_pruned({"distill": nmr.NMDistillParams(), "finetune": FT, "train": tp}, dense=dense,
                            pruned=pruned, train=data["train"], val=data["val"], test=data["test"])
    return dict(data=data, tp=tp, dense=dense, pruned=pruned, finetuned=finetuned, kd=kd)


def test_distilled_student_keeps_the_nm_masks(pipeline):
    kd, pruned = pipeline["kd"], unpack_groups(pipeline["pruned"])
    distilled = unpack_groups(kd["weights"])
    assert sorted(distilled) == ["1:8_v1", "2:4_v1"]  # default vectors (1,): the v = 8 variants are skipped
    for var, seeds in distilled.items():
        n, m, _ = nm.parse_variant(var)
        assert kd["metrics"]["variants"][var]["masks_held"] == 1.0
        assert kd["metrics"]["variants"][var]["masked_fraction"] == pytest.approx(1 - n / m)
        for seed, sd in seeds.items():
            for layer in ("features.0", "features.2"):
                w, w0 = sd[f"{layer}.weight"], pruned[var][seed][f"{layer}.weight"]
                groups = (w != 0).view(w.shape[0], -1, m).sum(-1)
                assert bool((groups == n).all()), f"{var}/{seed}/{layer} lost its {n}:{m} structure"
                assert torch.equal(w == 0, w0 == 0)  # the same mask as pruning's
                assert not torch.equal(w, w0)  # and the kept weights were trained
            assert not torch.equal(sd["head.weight"], pruned[var][seed]["head.weight"])


def test_distilled_predictions_are_item_level_and_match_the_stage_accuracy(pipeline):
    kd, test = pipeline["kd"], pipeline["data"]["test"]
    preds = kd["predictions"]
    assert set(preds.column("model").to_pylist()) == {"distilled/1:8_v1", "distilled/2:4_v1"}
    assert preds.num_rows == 2 * 2 * test.num_rows  # variants x seeds x test items
    for var, m in kd["metrics"]["variants"].items():
        for seed, per in m["seeds"].items():
            rows = [r for r in preds.to_pylist() if r["model"] == f"distilled/{var}" and r["seed"] == int(seed)]
            assert sum(r["correct"] for r in rows) / len(rows) == pytest.approx(per["test_acc"])
    # the report's seed-multiplicity table gains the KD-recovered rows, accuracy from the items
    summary = pa.table({"dataset": ["digits"], "model": ["dense"], "acc_mean": [1.0]})
    dense_preds = preds.filter(pa.compute.equal(preds["model"], "distilled/2:4_v1"))
    dense_preds = dense_preds.set_column(0, "model", pa.array(["dense"] * dense_preds.num_rows))
    got = {r["model"]: r for r in nmr.seed_multiplicity_table({"digits": dense_preds}, summary,
                                                               {"digits": preds}).to_pylist()}
    assert set(got) == {"dense", "distilled/1:8_v1", "distilled/2:4_v1"}
    assert got["distilled/2:4_v1"]["churn"] == got["dense"]["churn"]  # the same decisions
    assert got["distilled/2:4_v1"]["acc_below_dense"] == pytest.approx(1.0 - kd["metrics"]["variants"]["2:4_v1"]["test_acc_mean"])


def test_ce_recovery_equals_finetuning_bit_for_bit(pipeline):
    """With loss 'ce' the KD stage *is* fine-tuning (same budget, mask and data order)."""
    p = pipeline
    ce = nmr.distill_pruned(
        {"distill": nmr.NMDistillParams(loss="ce", patterns=("2:4",)), "finetune": FT, "train": p["tp"]},
        dense=p["dense"], pruned=p["pruned"], train=p["data"]["train"], val=p["data"]["val"], test=p["data"]["test"],
    )
    got, want = unpack_groups(ce["weights"])["2:4_v1"], unpack_groups(p["finetuned"])["2:4_v1"]
    for seed in (0, 1):
        for k in want[seed]:
            assert torch.equal(got[seed][k], want[seed][k]), f"seed {seed} {k}"


def test_params_are_checked():
    with pytest.raises(ValueError, match="two heads|2 heads"):
        nmr.NMDistillParams(loss="dual_head")
    with pytest.raises(ValueError, match="temp"):
        nmr.NMDistillParams(loss_params={"temp": 2.0})
    with pytest.raises(ValueError, match="'lira_online' needs shadow models"):
        nmr.NMAuditParams(attacks=("loss", "lira_online"))
    with pytest.raises(ValueError, match="headline 'grad_norm' is not one of"):
        nmr.NMAuditParams(attacks=("loss",), headline="grad_norm")
    with pytest.raises(ValueError, match="extra"):
        nmr.NMAuditParams(n_shadow=2)


TUNING = {"budget": {"n_trials": 2, "seeds": [0]}, "spaces": {"finetune": {}, "kd": {}}}


def test_paper_params_cross_checks():
    from flows.papers.nm_sparsity import NMSparsityParams

    with pytest.raises(ValueError, match=r"distill.patterns: '2:8' is not in prune.patterns"):
        NMSparsityParams(prune={"patterns": ["2:4"]}, distill={"patterns": ["2:8"]}, tuning=TUNING)
    with pytest.raises(ValueError, match=r"audit.vectors = \[4\]: not all in prune.vectors"):
        NMSparsityParams(audit={"vectors": [4]}, tuning=TUNING)
    with pytest.raises(ValueError, match=r"audit.seeds = \[7, 0\]"):
        NMSparsityParams(audit={"seeds": [7, 0]}, tuning=TUNING)
    # issue #17: the recovery arms' search spaces are checked against their params
    kd_space = {"loss_params.alpha": {"type": "float", "low": 0.1, "high": 1.0}}
    with pytest.raises(ValueError, match=r"UnknownHyperparameterError: tuning.spaces.kd.loss_params.alpha"):
        NMSparsityParams(tuning={**TUNING, "spaces": {"finetune": {}, "kd": kd_space}})
    with pytest.raises(ValueError, match=r"SettingOutsideSpaceError: tuning.spaces.finetune.lr"):
        NMSparsityParams(tuning={**TUNING, "spaces": {"finetune": {"lr": {"type": "float", "low": 0.1, "high": 1.0}},
                                                      "kd": {}}})
    with pytest.raises(ValueError, match=r"tuning.budget.seeds: seed\(s\) \[9\] not in train.seeds"):
        NMSparsityParams(tuning={**TUNING, "budget": {"seeds": [9]}})


def test_recovery_tuning_at_the_paper_setting_reproduces_the_recovery_stages(pipeline):
    """Trial 0 of each arm is the paper's setting: its validation score is what the fine-tuning
    and KD stages measure for that variant and seed, and a tuned stage left at the paper's
    setting gives the very weights of the stage at the paper's settings."""
    from tasks.platform.tuning import TuningParams

    p = pipeline
    dp, data = nmr.NMDistillParams(), p["data"]
    tuning = TuningParams.model_validate({"budget": {"n_trials": 2, "seeds": [1]},
                                          "spaces": {"finetune": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2}},
                                                     "kd": {}}})
    params = {"tuning": tuning, "finetune": FT, "distill": dp, "train": p["tp"]}
    out = nmr.tune_recovery(params, dense=p["dense"], pruned=p["pruned"], train=data["train"], val=data["val"])
    tuned, rows = out["tuned"], out["trials"].to_pylist()
    assert tuned["focus_variant"] == "2:4_v1" and len(rows) == 4
    ft_metrics = nm.finetune({"finetune": FT, "train": p["tp"]}, pruned=p["pruned"], train=data["train"],
                             val=data["val"])["metrics"]["final"]
    assert rows[0]["arm"] == "finetune" and rows[0]["seed_scores"] == [ft_metrics["2:4_v1.1"]["val_acc"]]
    assert rows[2]["arm"] == "kd" and rows[2]["seed_scores"] == [p["kd"]["metrics"]["variants"]["2:4_v1"]["seeds"]["1"]["val_acc"]]
    assert tuned["arms"]["kd"]["tuned_is_paper"]
    again = nmr.distill_pruned_tuned({"distill": dp, "finetune": FT, "train": p["tp"]}, tuned=tuned, dense=p["dense"],
                                     pruned=p["pruned"], train=data["train"], val=data["val"], test=data["test"])
    assert all(torch.equal(again["weights"][k], v) for k, v in p["kd"]["weights"].items())
    stale = {**tuned, "arms": {**tuned["arms"], "kd": {**tuned["arms"]["kd"], "config": {"lr": 1.0}}}}
    with pytest.raises(ValueError, match="configuration of arm 'kd' does not match"):
        nmr.distill_pruned_tuned({"distill": dp, "finetune": FT, "train": p["tp"]}, tuned=stale, **{})


@pytest.fixture(scope="module")
def audited(pipeline):
    p = pipeline
    ap = nmr.NMAuditParams(n_boot=30)
    out = nmr.audit({"audit": ap, "train": p["tp"]}, dense=p["dense"], pruned=p["pruned"], finetuned=p["finetuned"],
                    distilled=p["kd"]["weights"], train=p["data"]["train"], test=p["data"]["test"])
    return ap, out


def test_audit_table_rows_columns_and_ranges(pipeline, audited):
    ap, out = audited
    table = out["results"]
    artifacts.check_schema(table, nmr.AUDIT_SCHEMA, "audit")
    df = table.to_pandas()
    # dense + (pruned, finetuned at v = 1; distilled) x 2 patterns, x 2 seeds, x 4 attacks
    models = {"dense"} | {f"{k}/{v}_v1" for k in ("pruned", "finetuned", "distilled") for v in PATTERNS}
    assert set(df["model"]) == models
    assert len(df) == len(models) * 2 * len(ap.attacks)
    assert df.groupby(["model", "seed"]).size().eq(len(ap.attacks)).all()
    assert set(df["attack"]) == set(ap.attacks)
    assert set(df["kind"]) == set(nmr.KINDS)
    n_train, n_test = pipeline["data"]["train"].num_rows, pipeline["data"]["test"].num_rows
    assert (df["n_members"] == n_train).all() and (df["n_nonmembers"] == n_test).all()
    for col in ("auc", "bal_acc", "tpr_at_fpr", "acc", "train_acc", "ece", "ece_mass", "classwise_ece", "brier"):
        assert df[col].between(0, 1).all(), col
    assert (df["bal_acc"] >= 0.5).all() and (df["nll"] > 0).all()
    for k in ("auc", "acc", "ece", "brier", "nll"):
        assert ((df[f"{k}_lo"] <= df[k] + 1e-12) & (df[k] <= df[f"{k}_hi"] + 1e-12)).all(), k
    assert df.loc[df["kind"] == "dense", "sparsity"].eq(0).all()
    assert df.loc[df["variant"] == "1:8_v1", "sparsity"].eq(0.875).all()
    # calibration repeats per attack row of one model; the pruned and dense models differ
    one = df[(df["model"] == "pruned/2:4_v1") & (df["seed"] == 0)]
    assert one["ece"].nunique() == 1
    dense_acc = df.loc[(df["model"] == "dense") & (df["seed"] == 0), "acc"].iloc[0]
    assert one["acc"].iloc[0] != dense_acc
    assert all(math.isfinite(v) for v in artifacts.flat_metrics(out["metrics"]).values())
    assert out["metrics"]["dense"]["auc"] == pytest.approx(df[(df["model"] == "dense") & (df["attack"] == "loss")]["auc"].mean())
    assert type(out["plot"]).__name__ == "Figure"


def test_audit_matches_the_shared_cores(pipeline, audited):
    """One row of the table equals audit_models + calibration_audit called directly."""

    p, (ap, out) = pipeline, audited
    sd = unpack_groups(p["kd"]["weights"])["2:4_v1"][1]
    model = init_model(p["tp"].model, p["data"]["train"], num_classes(p["data"]["train"]), 1)
    model.load_state_dict(sd)
    mia = audit_models(model, p["data"]["train"], p["data"]["test"], ("loss",), fprs=(ap.fpr,), n_boot=ap.n_boot, seed=1)
    cal = calibration_audit(model, p["data"]["test"], n_bins=ap.n_bins, n_boot=ap.n_boot, seed=1)["metrics"]
    df = out["results"].to_pandas()
    row = df[(df["model"] == "distilled/2:4_v1") & (df["seed"] == 1) & (df["attack"] == "loss")].iloc[0]
    assert row["auc"] == pytest.approx(mia["metrics"].column("auc")[0].as_py())
    assert row["ece"] == pytest.approx(cal["ece"]) and row["ece_hi"] == pytest.approx(cal["ece_hi"])


def test_audit_rejects_unknown_seeds(pipeline):
    p = pipeline
    with pytest.raises(ValueError, match=r"audit.seeds \[5\] were not trained"):
        nmr.audit({"audit": nmr.NMAuditParams(seeds=(0, 5)), "train": p["tp"]}, dense=p["dense"], pruned=p["pruned"],
                  finetuned=p["finetuned"], distilled=p["kd"]["weights"], train=p["data"]["train"], test=p["data"]["test"])


def _row(model, kind, variant, seed, acc, auc, ece):
    base = {c: 0.5 for c in nmr.AUDIT_SCHEMA.names}
    base.update(model=model, kind=kind, variant=variant, sparsity=0.0 if variant == "dense" else 0.5, seed=seed,
                attack="loss", acc=acc, auc=auc, ece=ece, n_members=10, n_nonmembers=10, train_acc=acc)
    return base


def test_recovery_section_on_a_hand_built_table():
    """Hand-computed paired differences: KD +2 pts on every seed, AUC and ECE lower."""
    rows = []
    for s in range(4):
        rows += [_row("dense", "dense", "dense", s, 0.90, 0.60, 0.05),
                 _row("pruned/2:4_v1", "pruned", "2:4_v1", s, 0.70, 0.55, 0.10),
                 _row("finetuned/2:4_v1", "finetuned", "2:4_v1", s, 0.85 + 0.01 * s, 0.58, 0.06),
                 _row("distilled/2:4_v1", "distilled", "2:4_v1", s, 0.87 + 0.01 * s, 0.57, 0.04)]
    table = pa.Table.from_pylist(rows, schema=nmr.AUDIT_SCHEMA)
    sec = nmr.recovery_section({"toy": table}, "loss", reps=200, alpha=0.05)
    rec = sec["recovery"].to_pylist()
    assert len(rec) == 1 and rec[0]["diff_pts"] == pytest.approx(2.0) and rec[0]["kd_wins"] == 4
    assert [r["model"] for r in sec["table"].to_pylist()] == ["dense", "pruned/2:4_v1", "finetuned/2:4_v1", "distilled/2:4_v1"]
    claims = sec["claims"]
    assert all(isinstance(c, Claim) and c.claim.startswith("Our check (not a claim of the paper)") for c in claims)
    assert [c.verdict for c in claims] == ["reproduced"] * 4
    assert claims[0].value == pytest.approx(2.0) and claims[0].unit == "pts"
    assert claims[1].value == pytest.approx(-0.05)
    assert sec["metrics"]["recovery"] == {"toy/2:4_v1": pytest.approx(2.0)}


def test_seed_multiplicity_table_on_hand_built_predictions():
    # digits, 4 items, 2 seeds; dense seeds disagree on item 3, pruned seeds on items 0 and 3
    preds = {"dense": [[0, 1, 2, 1], [0, 1, 2, 0]], "pruned/2:4_v1": [[1, 1, 2, 1], [0, 1, 2, 2]]}
    rows = [(m, s, i, p) for m, per in preds.items() for s, dec in enumerate(per) for i, p in enumerate(dec)]
    table = pa.table({k: [r[j] for r in rows] for j, k in enumerate(("model", "seed", "id", "pred"))})
    summary = pa.table({"dataset": ["digits"] * 2, "model": ["dense", "pruned/2:4_v1"], "acc_mean": [0.9, 0.85]})
    got = {r["model"]: r for r in nmr.seed_multiplicity_table({"digits": table}, summary).to_pylist()}
    assert got["dense"]["churn"] == pytest.approx(1 / 4) and got["dense"]["acc_below_dense"] == 0.0
    assert got["pruned/2:4_v1"]["churn"] == pytest.approx(2 / 4)
    assert got["pruned/2:4_v1"]["ambiguity"] == pytest.approx(2 / 4)
    assert got["pruned/2:4_v1"]["acc_below_dense"] == pytest.approx(0.05)
    assert got["dense"]["seeds"] == 2
    # one seed: nothing to compare, no table
    assert nmr.seed_multiplicity_table({"digits": table.filter(pa.compute.equal(table["seed"], 0))}, summary) is None
