"""Tests for tasks/audit/mia.py: hand-computed formulas, fixed conventions, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from scipy import stats
from sklearn.metrics import roc_auc_score

from tasks.audit import mia

# ---- metric conventions ---------------------------------------------------------------------
# in = [0, 4, 6, 7], out = [1, 2, 3, 5]: trapezoid AUC 11/16 (the ROC convex hull would give
# 13/16, jax_privacy's attack_auroc); ROC points (fpr, tpr) by falling threshold:
# 7:(0,.25) 6:(0,.5) 5:(.25,.5) 4:(.25,.75) 3:(.5,.75) 2:(.75,.75) 1:(1,.75) 0:(1,1).
IN4, OUT4 = np.array([0.0, 4, 6, 7]), np.array([1.0, 2, 3, 5])
S4, Y4 = np.r_[IN4, OUT4], np.r_[np.ones(4, bool), np.zeros(4, bool)]


def test_auc_is_trapezoid_not_hull() -> None:
    assert mia.auc(S4, Y4) == pytest.approx(11 / 16)
    assert mia.fast_auc(IN4, OUT4) == pytest.approx(11 / 16)


def test_tpr_at_fpr_uses_less_or_equal() -> None:
    # fpr <= 0.25 reaches the point (0.25, 0.75); a strict "<" would stop at (0, 0.5).
    assert mia.tpr_at_fpr(S4, Y4, 0.25) == pytest.approx(0.75)
    assert mia.tpr_at_fpr(S4, Y4, 0.2) == pytest.approx(0.5)
    assert mia.tpr_at_fpr(S4, Y4, 0.0) == pytest.approx(0.5)


def test_balanced_accuracy_hand_computed() -> None:
    # best point (0.25, 0.75) or (0, 0.5): 1 - (0.25 + 0.25) / 2 = 0.75
    assert mia.balanced_accuracy(S4, Y4) == pytest.approx(0.75)


def test_jax_privacy_docstring_vector() -> None:
    out = np.arange(100.0)
    s, y = np.r_[out + 9.5, out], np.r_[np.ones(100, bool), np.zeros(100, bool)]
    assert mia.tpr_at_fpr(s, y, 0.01) == pytest.approx(0.11)
    assert mia.auc(s, y) == pytest.approx(0.5905)


def test_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 300).astype(float)
    y = rng.random(300) < 0.4
    assert mia.auc(s, y) == pytest.approx(roc_auc_score(y, s))
    assert mia.fast_auc(s[y], s[~y]) == pytest.approx(roc_auc_score(y, s))


def test_auc_ci_brackets_point_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(1)
    small = np.r_[rng.normal(0.5, 1, 50), rng.normal(0, 1, 50)]
    big = np.r_[rng.normal(0.5, 1, 2000), rng.normal(0, 1, 2000)]
    ys, yb = np.r_[np.ones(50, bool), np.zeros(50, bool)], np.r_[np.ones(2000, bool), np.zeros(2000, bool)]
    a, lo, hi = mia.auc_ci(small, ys, n_boot=300)
    A, LO, HI = mia.auc_ci(big, yb, n_boot=300)
    assert lo <= a <= hi and LO <= A <= HI
    assert HI - LO < (hi - lo) / 3
    assert LO < stats.norm.cdf(0.5 / np.sqrt(2)) < HI  # true AUC of N(.5,1) vs N(0,1)


def test_attack_metrics_keys_and_roc_plot() -> None:
    m = mia.attack_metrics(S4, Y4, n_boot=50)
    assert {"auc", "auc_lo", "auc_hi", "bal_acc", "tpr_at_0.001_fpr", "tpr_at_0.01_fpr"} <= set(m)
    fig = mia.roc_plot({"a": (S4, Y4)})
    assert isinstance(fig, Figure) and fig.axes[0].get_xscale() == "log"


@pytest.mark.parametrize(
    "scores, labels, match",
    [
        ([0.1, np.nan, 0.3], [1, 0, 1], "NaN"),
        ([0.1, 0.2, 0.3], [1, 1, 1], "all one class"),
        ([0.1, 0.2, 0.3], [0, 0, 0], "all one class"),
        ([0.1, 0.2], [1, 0, 1], "mismatched lengths"),
        ([0.1, 0.2, 0.3], [2, 0, 1], "bool or 0/1"),
    ],
)
def test_bad_scores_raise(scores, labels, match) -> None:
    with pytest.raises(ValueError, match=match):
        mia.auc(scores, labels)


# ---- attack formulas on hand-computed cases ---------------------------------------------------
LOGITS = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]]))
LABELS = np.array([0, 2])


def test_loss_entropy_modified_entropy_by_hand() -> None:
    inp = mia.AttackInputs(logits=LOGITS, labels=LABELS)
    p = np.exp(LOGITS)
    np.testing.assert_allclose(mia.run_attack("loss", inp), [np.log(0.7), np.log(0.3)])
    np.testing.assert_allclose(mia.run_attack("entropy", inp), (p * np.log(p)).sum(1))
    # Mentr row 0 = -(0.3) ln 0.7 - 0.2 ln 0.8 - 0.1 ln 0.9
    m0 = -0.3 * np.log(0.7) - 0.2 * np.log(0.8) - 0.1 * np.log(0.9)
    m1 = -0.7 * np.log(0.3) - 0.1 * np.log(0.9) - 0.6 * np.log(0.4)
    np.testing.assert_allclose(mia.run_attack("modified_entropy", inp), [-m0, -m1])


def test_logit_scaled_confidence() -> None:
    phi = mia.logit_scaled_confidence(LOGITS, LABELS)
    np.testing.assert_allclose(phi, [np.log(0.7 / 0.3), np.log(0.3 / 0.7)])
    # stays finite where p_y rounds to 1 in float64
    assert np.isfinite(mia.logit_scaled_confidence(np.array([[60.0, 0.0]]), np.array([0]))).all()


def _ref_inputs():
    """Two candidates, four reference models; candidate j IN for models ref_in[:, j]."""
    ref_in = np.array([[1, 0], [1, 1], [0, 0], [0, 1]], bool)
    # phi values per (model, candidate): logits (z_y, 0) give phi = z_y exactly
    phi_ref = np.array([[3.0, 0.0], [5.0, 2.0], [0.0, -1.0], [2.0, 4.0]])
    ref_logits = np.stack([phi_ref, np.zeros_like(phi_ref)], -1)  # (4, 2, 2)
    logits = np.array([[4.0, 0.0], [1.0, 0.0]])
    return mia.AttackInputs(logits=logits, labels=np.array([0, 0]), ref_logits=ref_logits, ref_in=ref_in), phi_ref


def test_lira_online_by_hand() -> None:
    inp, phi_ref = _ref_inputs()
    # candidate 0: IN {3, 5} -> median 4, std 1; OUT {0, 2} -> median 1, std 1; phi = 4
    # candidate 1: IN {2, 4} -> 3, std 1; OUT {0, -1} -> -0.5, std 0.5; phi = 1
    expect = [
        stats.norm.logpdf(4, 4, 1) - stats.norm.logpdf(4, 1, 1),
        stats.norm.logpdf(1, 3, 1) - stats.norm.logpdf(1, -0.5, 0.5),
    ]
    np.testing.assert_allclose(mia.run_attack("lira_online", inp), expect)
    # fixed variance: global std of all IN phi {3,5,2,4} and all OUT phi {0,2,0,-1}
    sd_in, sd_out = np.std([3, 5, 2, 4]), np.std([0, 2, 0, -1])
    expect_fix = [
        stats.norm.logpdf(4, 4, sd_in) - stats.norm.logpdf(4, 1, sd_out),
        stats.norm.logpdf(1, 3, sd_in) - stats.norm.logpdf(1, -0.5, sd_out),
    ]
    np.testing.assert_allclose(mia.run_attack("lira_online", inp, fix_variance=True), expect_fix)


def test_lira_offline_and_reference_loss_by_hand() -> None:
    inp, _ = _ref_inputs()
    expect = [stats.norm.logcdf((4 - 1) / 1), stats.norm.logcdf((1 + 0.5) / 0.5)]
    np.testing.assert_allclose(mia.run_attack("lira_offline", inp), expect)
    lp = lambda z: -np.log1p(np.exp(-z))  # log p_y for logits (z, 0)
    ref = [np.mean([lp(0.0), lp(2.0)]), np.mean([lp(0.0), lp(-1.0)])]
    np.testing.assert_allclose(mia.run_attack("reference_loss", inp), [lp(4.0) - ref[0], lp(1.0) - ref[1]])


def test_rmia_by_hand() -> None:
    # probabilities of the true label (2 classes, logits (log p, log(1-p)))
    def lg(p):
        p = np.asarray(p, float)
        return np.stack([np.log(p), np.log1p(-p)], -1)

    inp = mia.AttackInputs(
        logits=lg([0.9, 0.5]), labels=np.array([0, 0]),
        ref_logits=lg([[0.6, 0.5], [0.6, 0.5]]),
        pop_logits=lg([0.5, 0.8, 0.2]), pop_labels=np.array([0, 0, 0]),
        ref_pop_logits=lg([[0.5, 0.4, 0.4], [0.5, 0.4, 0.4]]),
    )
    # ratio_x = [0.9/0.6, 0.5/0.5] = [1.5, 1]; ratio_z = [1, 2, 0.5]
    # x0: LR > 1 for z with ratio_z < 1.5 -> {1, 0.5} -> 2/3; x1: ratio_z < 1 -> {0.5} -> 1/3
    np.testing.assert_allclose(mia.run_attack("rmia", inp), [2 / 3, 1 / 3])
    # offline a = 0: Pr(x) = (P_out + 1) / 2 = 0.8, 0.75; Pr(z) = 0.75, 0.7, 0.7
    # ratio_x = [1.125, 0.667]; ratio_z = [0.667, 1.143, 0.286]
    np.testing.assert_allclose(mia.run_attack("rmia", inp, offline_a=0.0), [2 / 3, 1 / 3])


def test_min_k_and_zlib_by_hand() -> None:
    lps = [np.array([-1.0, -5.0, -2.0, -0.5, -3.0]), np.array([-0.1, -0.2])]
    texts = ["hello hello hello", "ab"]
    inp = mia.AttackInputs(token_logprobs=lps, texts=texts)
    # k = 0.2: ceil(0.2 * 5) = 1 lowest -> -5; ceil(0.4) = 1 -> -0.2
    np.testing.assert_allclose(mia.run_attack("min_k", inp), [-5.0, -0.2])
    np.testing.assert_allclose(mia.run_attack("min_k", inp, k=0.4), [-4.0, -0.2])  # ceil(0.8) = 1
    import zlib

    z = [8 * len(zlib.compress(t.encode())) for t in texts]
    np.testing.assert_allclose(mia.run_attack("zlib", inp), [lps[0].sum() / z[0], lps[1].sum() / z[1]])


def test_gradient_norms_match_autograd_loop() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    got = mia.gradient_norms(model, x, y)
    for i in range(6):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        ref = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters()))
        assert got[i] == pytest.approx(float(ref), rel=1e-5)
    inp = mia.AttackInputs(grad_norms=got)
    np.testing.assert_allclose(mia.run_attack("grad_norm", inp), -got)


def test_balanced_membership() -> None:
    keep = mia.balanced_membership(8, 50, seed=0)
    assert keep.shape == (8, 50) and (keep.sum(0) == 4).all()
    lone = mia.balanced_membership(1, 51, seed=0)
    assert lone.shape == (1, 51) and lone.sum() == 25


# ---- registry and input errors ----------------------------------------------------------------
def test_unknown_attack_names_registered() -> None:
    with pytest.raises(ValueError, match="unknown attack 'nope'.*lira_online"):
        mia.run_attack("nope", mia.AttackInputs())


def test_missing_input_is_named() -> None:
    with pytest.raises(ValueError, match="needs input.*ref_logits"):
        mia.run_attack("lira_online", mia.AttackInputs(logits=LOGITS, labels=LABELS))


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):
        mia.register_attack("loss", needs=(), cite="")(lambda inp: None)


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"logits": np.array([[np.nan, 0.0]]), "labels": np.array([0])}, "logits contains NaN"),
        ({"logits": LOGITS, "labels": np.array([0])}, "labels must have shape"),
        ({"logits": LOGITS, "labels": LABELS, "ref_logits": np.zeros((2, 3, 3))}, "ref_logits shape"),
    ],
)
def test_bad_attack_inputs(fields, match) -> None:
    with pytest.raises(ValueError, match=match):
        mia.run_attack("loss", mia.AttackInputs(**fields))
