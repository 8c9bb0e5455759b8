"""Margin preserving training: hand-computed loss terms and the negative-flip metric."""

import math

import pytest
import torch
from torch.nn import functional as F

from tasks.data_prep import make_table
from tasks.platform.errors import ReprolabError
from tasks.distill.losses import flips as NF
from tasks.papers import negative_flips as nfp


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_focal_kd_weights_samples_the_reference_gets_right():
    s = t([0.0, 0.0], [0.0, 0.0])
    z = t([math.log(3), 0.0], [math.log(3), 0.0])  # reference predicts class 0 on both rows
    y = torch.tensor([0, 1])  # right on row 0, wrong on row 1
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    # weights: row 0 alpha + beta = 6, row 1 alpha = 1 -> mean 3.5 * kl (tau = 1)
    assert NF.focal_kd(s, z, y, alpha=1.0, beta=5.0, tau=1.0).item() == pytest.approx(3.5 * kl, rel=1e-6)


def test_margin_calibrated_ce_hand_value():
    s, y = t([0.0, 0.0, 0.0]), torch.tensor([0])
    # new class 2 gets +b: p(0) = 1 / (2 + e^b)
    got = NF.margin_calibrated_ce(s, y, n_old=2, bias=math.log(2)).item()
    assert got == pytest.approx(math.log(4), rel=1e-6)
    assert NF.margin_calibrated_ce(s, y, n_old=2, bias=0.0).item() == pytest.approx(math.log(3), rel=1e-6)


def test_margin_calibration_pushes_new_class_logits_down():
    # the gradient of the biased CE on an old-class sample pushes the new-class logit down
    # harder than plain CE does (larger old/new margin after training)
    s, y = t([0.0, 0.0, 0.0]).requires_grad_(), torch.tensor([0])
    NF.margin_calibrated_ce(s, y, n_old=2, bias=2.0).backward()
    g_biased = s.grad[0, 2].item()
    s2 = t([0.0, 0.0, 0.0]).requires_grad_()
    F.cross_entropy(s2, y).backward()
    assert g_biased > s2.grad[0, 2].item() > 0


def test_mpt_is_the_sum_of_its_terms():
    g = torch.Generator().manual_seed(1)
    s, new, old = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g), torch.randn(5, 2, generator=g)
    y = torch.tensor([0, 1, 2, 3, 1])
    got = NF.mpt(s, y, [new, old], bias=4.0).item()
    expected = (
        NF.margin_calibrated_ce(s, y, 2, 4.0)
        + NF.focal_kd(s[:, :2], old, y, 1.0, 5.0, 5.0)
        + NF.focal_kd(s, new, y, 1.0, 5.0, 5.0)
    ).item()
    assert got == pytest.approx(expected, rel=1e-6)
    # teacher order does not matter: sources are told apart by their class count
    assert NF.mpt(s, y, [old, new], bias=4.0).item() == pytest.approx(got, rel=1e-6)
    single = NF.focal_kd_old(s, y, [new, old]).item()
    assert single == pytest.approx((F.cross_entropy(s, y) + NF.focal_kd(s[:, :2], old, y, 1.0, 5.0, 5.0)).item(), rel=1e-6)


def test_mpt_needs_both_sources():
    s, y = torch.zeros(2, 4), torch.tensor([0, 1])
    with pytest.raises(ReprolabError, match="old model"):
        NF.mpt(s, y, [torch.zeros(2, 4)])
    with pytest.raises(ReprolabError, match="at most one old"):
        NF.mpt(s, y, [torch.zeros(2, 2), torch.zeros(2, 3)])


def test_flip_metrics_hand_case():
    y = torch.tensor([0, 1, 1, 2, 0])
    old = t([5, 0], [0, 5], [5, 0], [5, 0], [5, 0])  # right on rows 0, 1, 4 (row 3 is a new class)
    new = t([0, 5, 0], [0, 5, 0], [0, 5, 0], [0, 0, 5], [5, 0, 0])  # wrong on row 0 only
    m = nfp.flip_metrics(old, new, y)
    assert m["nfr"] == pytest.approx(1 / 4)  # one flip over four old-class samples
    assert m["acc"] == pytest.approx(4 / 5)
    assert m["acc_old"] == pytest.approx(3 / 4)
    assert m["acc_new"] == pytest.approx(1.0)
    assert m["old_acc"] == pytest.approx(3 / 4)


def test_select_old_classes_filters_rows_and_errors_when_empty():
    x = torch.zeros(6, 3).numpy()
    table = make_table(torch.arange(6).numpy(), x, torch.tensor([0, 1, 2, 3, 4, 5]).numpy())
    out = nfp.select_old_classes(nfp.OldClassesParams(n_old=3), train=table, val=table)
    assert out["train"].column("label").to_pylist() == [0, 1, 2]
    high = make_table(torch.arange(2).numpy(), x[:2], torch.tensor([7, 8]).numpy())
    with pytest.raises(ReprolabError, match="no val rows with label < 3"):
        nfp.select_old_classes(nfp.OldClassesParams(n_old=3), train=table, val=high)


def _flips(nfr_by_arm, mult_by_arm):
    """A flips metrics dict as evaluate_flips writes it (seeds 0, 1)."""
    out = {}
    for arm, (a, b) in nfr_by_arm.items():
        out[arm] = {"seeds": {str(s): {"nfr": v, "acc": 0.9, "acc_old": 0.9, "acc_new": 0.9}
                              for s, v in ((0, a), (1, b))}}
        if arm in mult_by_arm:
            out[arm]["multiplicity"] = mult_by_arm[arm]
    return out


def test_report_has_a_seed_multiplicity_row_per_arm():
    mult = lambda churn: {"ambiguity": 2 * churn, "discrepancy": churn, "churn": churn,  # noqa: E731
                          "disagreement": churn, "n_models": 2.0}
    flips = _flips({"ce": (0.10, 0.12), "focal_kd_old": (0.08, 0.08), "mpt_nobias": (0.07, 0.07),
                    "mpt": (0.05, 0.05)}, {"ce": mult(0.03), "focal_kd_old": mult(0.02),
                                           "mpt_nobias": mult(0.02), "mpt": mult(0.01)})
    out = nfp.report(nfp.FlipReportParams(), flips=flips)
    assert "Seed-to-seed multiplicity per arm" in out["report"]
    # gain = 0.11 - 0.05 = 6 pts vs ce's seed-to-seed churn of 3 pts
    assert "lowers the mean NFR by 6.00 pts" in out["report"] and "change 3.00 pts" in out["report"]
    assert "the gain is larger than" in out["report"]
    assert out["metrics"]["ce.seed_churn"] == pytest.approx(0.03)
    # a single-seed run has no multiplicity: no row, no note
    out1 = nfp.report(nfp.FlipReportParams(), flips=_flips({a: (0.1, 0.1) for a in flips}, {}))
    assert "Seed-to-seed" not in out1["report"] and "ce.seed_churn" not in out1["metrics"]


def test_evaluate_flips_measures_multiplicity_between_seeds():
    from models import ModelSpec
    from tasks.distill.distill import DistillSetup
    from tasks.train import TrainParams, init_model, pack_seeds

    torch.manual_seed(0)
    x = torch.randn(40, 4).numpy()
    y = torch.arange(40).remainder(3).numpy()
    test = make_table(torch.arange(40).numpy(), x, y)
    spec = ModelSpec(hidden=(8,))
    old_p = TrainParams(model=spec, seeds=(0, 1))
    setup = DistillSetup(student=spec)
    old = pack_seeds({s: init_model(spec, test, 2, s).state_dict() for s in (0, 1)})
    same = init_model(spec, test, 3, 7).state_dict()
    arms = {"weights_same": pack_seeds({0: same, 1: same}),
            "weights_diff": pack_seeds({s: init_model(spec, test, 3, s).state_dict() for s in (0, 1)})}
    out = nfp.evaluate_flips({"distill": setup, "old": old_p}, old_weights=old, test=test, **arms)["metrics"]
    assert out["same"]["multiplicity"]["churn"] == 0 and out["same"]["multiplicity"]["ambiguity"] == 0
    m = out["diff"]["multiplicity"]
    assert m["n_models"] == 2 and 0 < m["churn"] == m["discrepancy"] == m["ambiguity"] <= 1

