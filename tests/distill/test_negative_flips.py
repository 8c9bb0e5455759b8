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
