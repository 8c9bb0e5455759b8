"""Hand-computed cases for the KD losses in tasks/distill/losses/kd.py."""

import math

import pytest
import torch
from torch.nn import functional as F

from tasks.platform.errors import ReprolabError
from tasks.distill import losses
from tasks.distill.losses import kd as K


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


# ---------------------------------------------------------------- registry


def test_registry_lists_all_paper_losses():
    names = losses.registered_losses()
    for name in ("ce", "kd", "dkd", "pld", "binary_kl", "kd_binary_kl", "dual_head", "gld", "mpt", "focal_kd_old"):
        assert name in names


def test_duplicate_registration_raises():
    with pytest.raises(ReprolabError, match="already registered"):
        losses.register_loss("kd")(lambda s, y, t: s.sum())


def test_unknown_loss_names_the_registered_ones():
    with pytest.raises(ReprolabError, match=r"unknown loss 'kdd'.*'kd'.*'pld'"):
        losses.get_loss("kdd")


def test_loss_params_are_checked_against_the_signature():
    with pytest.raises(ReprolabError, match=r"unknown params \['temprature'\]"):
        losses.check_loss_params("kd", {"temprature": 4})
    with pytest.raises(ReprolabError, match="temperature must be > 0, got 0"):
        losses.check_loss_params("kd", {"temperature": 0})
    with pytest.raises(ReprolabError, match="tau must be > 0"):
        losses.check_loss_params("mpt", {"tau": -1.0})
    losses.check_loss_params("kd", {"temperature": 2, "standardize": True})


# ---------------------------------------------------------------- vanilla KD


def test_kl_soft_hand_value_and_zero_on_equal_logits():
    # teacher p = (3/4, 1/4), student p = (1/2, 1/2), T = 1
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert K.kl_soft(t([0.0, 0.0]), t([math.log(3), 0.0]), 1.0).item() == pytest.approx(expected, rel=1e-6)
    z = t([1.0, -2.0, 0.5])
    assert K.kl_soft(z, z, 4.0).item() == pytest.approx(0.0, abs=1e-7)


def test_kl_soft_scales_with_t_squared():
    # logits scaled by T with temperature T give the T=1 KL times T^2
    zs, zt = t([0.0, 0.0]), t([math.log(3), 0.0])
    assert K.kl_soft(2 * zs, 2 * zt, 2.0).item() == pytest.approx(4 * K.kl_soft(zs, zt, 1.0).item(), rel=1e-6)


def test_kd_is_weighted_ce_plus_kl():
    zs, zt, y = t([0.0, 0.0]), t([math.log(3), 0.0]), torch.tensor([1])
    ce = math.log(2)
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    got = K.kd(zs, y, [zt], temperature=1.0, ce_weight=0.1, kd_weight=0.9).item()
    assert got == pytest.approx(0.1 * ce + 0.9 * kl, rel=1e-6)


def test_kd_averages_several_teachers():
    zs, y = t([0.3, -0.1, 0.0]), torch.tensor([0])
    a, b = t([1.0, 0.0, 0.0]), t([0.0, 1.0, 2.0])
    assert K.kd(zs, y, [a, b]).item() == pytest.approx(K.kd(zs, y, [(a + b) / 2]).item(), rel=1e-6)


# ---------------------------------------------------------------- logit standardization


def test_logit_standardize_hand_value():
    # mean 2, unbiased std 1
    out = K.logit_standardize(t([1.0, 2.0, 3.0]))
    torch.testing.assert_close(out, t([-1.0, 0.0, 1.0]) / (1 + 1e-7))


def test_standardized_kd_ignores_teacher_shift_and_scale():
    g = torch.Generator().manual_seed(0)
    zs, zt = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    y = torch.tensor([0, 1, 2, 3])
    base = K.kd(zs, y, [zt], temperature=2.0, standardize=True).item()
    moved = K.kd(zs, y, [3.0 * zt + 7.0], temperature=2.0, standardize=True).item()
    assert moved == pytest.approx(base, rel=1e-5)
    # without the pre-process the same change matters
    assert K.kd(zs, y, [3.0 * zt + 7.0], temperature=2.0).item() != pytest.approx(K.kd(zs, y, [zt], temperature=2.0).item(), rel=1e-3)


def test_standardized_kd_is_zero_kl_for_an_affine_student():
    # a student whose logits are an affine map of the teacher's matches it exactly after z-scoring
    zt = t([2.0, -1.0, 0.5, 0.0])
    loss = K.kd(0.5 * zt - 3.0, torch.tensor([0]), [zt], ce_weight=0.0, kd_weight=1.0, standardize=True)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------- DKD


def test_dkd_recovers_the_kl_decomposition():
    # DKD identity: KL = TCKD + (1 - p_t[target]) * NCKD, at T = 1 (one sample)
    zs, zt, y = t([0.2, 1.0, -0.5, 0.3]), t([1.5, 0.1, -1.0, 0.4]), torch.tensor([0])
    tckd = K.dkd(zs, y, [zt], temperature=1.0, ce_weight=0.0, alpha=1.0, beta=0.0).item()
    nckd = K.dkd(zs, y, [zt], temperature=1.0, ce_weight=0.0, alpha=0.0, beta=1.0).item()
    p_target = F.softmax(zt, -1)[0, 0].item()
    assert K.kl_soft(zs, zt, 1.0).item() == pytest.approx(tckd + (1 - p_target) * nckd, rel=1e-5)


# ---------------------------------------------------------------- PLD


def test_teacher_optimal_permutation():
    perm = K.teacher_optimal_permutation(t([0.0, 1.0, 2.0], [5.0, 1.0, 2.0]), torch.tensor([0, 1]))
    assert perm.tolist() == [[0, 2, 1], [1, 0, 2]]


def test_pld_hand_value():
    # s = 0 everywhere: suffix logsumexps are ln3, ln2, 0 along the ranking (0, 2, 1)
    zt, y = t([0.0, 1.0, 2.0]), torch.tensor([0])
    w = F.softmax(zt, -1)[0]
    expected = w[0].item() * math.log(3) + w[2].item() * math.log(2)
    assert K.pld(t([0.0, 0.0, 0.0]), y, [zt]).item() == pytest.approx(expected, rel=1e-6)


def test_pld_two_classes_is_weighted_ce_and_translation_invariant():
    zs, zt, y = t([0.3, -1.2]), t([0.5, 2.0]), torch.tensor([0])
    w_y = F.softmax(zt, -1)[0, 0].item()
    assert K.pld(zs, y, [zt]).item() == pytest.approx(w_y * F.cross_entropy(zs, y).item(), rel=1e-6)
    assert K.pld(zs + 5.0, y, [zt]).item() == pytest.approx(K.pld(zs, y, [zt]).item(), rel=1e-5)


def test_pld_is_minimised_by_the_teacher_ranking():
    zt, y = t([0.0, 1.0, 2.0, -1.0]), torch.tensor([3])
    ranked = t([10.0, 20.0, 30.0, 40.0])  # order 3, 2, 1, 0 = the teacher-optimal ranking
    reversed_ = t([40.0, 30.0, 20.0, 10.0])
    assert K.pld(ranked, y, [zt]).item() < 1e-3 < K.pld(reversed_, y, [zt]).item()


# ---------------------------------------------------------------- Dual-head KD


def test_binary_kl_hand_value():
    # teacher sigmoid 3/4, student 1/2, T = 1, one class
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert K.binary_kl(t([0.0]), t([math.log(3)]), 1.0).item() == pytest.approx(expected, rel=1e-6)
    z = t([0.5, -3.0])
    assert K.binary_kl(z, z, 2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_binary_kl_sees_a_logit_shift_softmax_kl_does_not():
    zt = t([1.0, 0.0, -1.0])
    assert K.kl_soft(zt + 2.0, zt, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert K.binary_kl(zt + 2.0, zt, 1.0).item() > 0.1


def test_dual_head_routes_each_loss_to_its_head():
    zt, y = t([1.0, 0.0, -1.0]), torch.tensor([0])
    main = t([0.1, 0.2, 0.3]).requires_grad_()
    aux = t([0.3, 0.2, 0.1]).requires_grad_()
    loss = K.dual_head((main, aux), y, [zt])
    expected = K.kd(main, y, [zt]) + K.binary_kl(aux, zt, 2.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    # the main head's gradient is that of the probability-level loss alone
    main2 = main.detach().clone().requires_grad_()
    K.kd(main2, y, [zt]).backward()
    torch.testing.assert_close(main.grad, main2.grad)


def test_single_head_both_adds_the_logit_loss():
    zs, zt, y = t([0.1, 0.2, 0.3]), t([1.0, 0.0, -1.0]), torch.tensor([0])
    got = K.kd_binary_kl(zs, y, [zt]).item()
    assert got == pytest.approx((K.kd(zs, y, [zt]) + K.binary_kl(zs, zt, 2.0)).item(), rel=1e-6)
