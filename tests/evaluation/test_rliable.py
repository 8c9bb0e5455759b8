"""Tests for tasks/evaluation/rliable.py: rliable's test vectors, hand-computed cases, coverage, errors."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from tasks.evaluation import rliable as rl

# rliable tests/rliable/metrics_test.py vectors
X = np.array([[1, 2], [2, 2], [1, 1], [2, 1]], dtype=float)  # 4 runs x 2 tasks
Y = np.array([[1, 1], [2, 2], [3, 3]], dtype=float)  # 3 runs x 2 tasks


@pytest.mark.parametrize("metric", ["mean", "median", "iqm"])
def test_rliable_vectors(metric: str) -> None:
    assert rl.aggregate(X, metric) == pytest.approx(1.5)
    assert rl.aggregate(Y, metric) == pytest.approx(2.0)


def test_probability_of_improvement_rliable_vector() -> None:
    assert rl.probability_of_improvement(X, Y) == pytest.approx(1 / 3)
    # complementarity: P(X>Y) + P(Y>X) = 1 (ties count 1/2 in both)
    assert rl.probability_of_improvement(Y, X) == pytest.approx(2 / 3)


def test_hand_computed_cases() -> None:
    s = np.array([[0.0, 10.0], [1.0, 20.0], [2.0, 30.0], [3.0, 40.0]])
    # per-task means 1.5 and 25 -> mean 13.25, median 13.25
    assert rl.aggregate(s, "mean") == pytest.approx(13.25)
    # pooled sorted: 0 1 2 3 10 20 30 40 -> drop 2 each side -> mean(2, 3, 10, 20) = 8.75
    assert rl.aggregate(s, "iqm") == pytest.approx(8.75)
    # optimality gap at gamma=1: 1 - mean(min(s, 1)) = 1 - (0 + 1 + 1 + 1 + 4*1)/8 = 0.125
    assert rl.aggregate(s, "optimality_gap") == pytest.approx(0.125)
    three = np.array([[1.0, 5.0, 9.0]])
    assert rl.aggregate(three, "median") == pytest.approx(5.0)


def test_probability_of_improvement_ties_and_dominance() -> None:
    a = np.array([[1.0], [1.0]])
    assert rl.probability_of_improvement(a, a) == pytest.approx(0.5)
    assert rl.probability_of_improvement(a + 1, a) == pytest.approx(1.0)
    # x = [1, 3], y = [2]: pairs (1>2)=0, (3>2)=1 -> 1/2 ; second task all x > y -> 1 ; mean 0.75
    x = np.array([[1.0, 5.0], [3.0, 6.0]])
    y = np.array([[2.0, 0.0]])
    assert rl.probability_of_improvement(x, y) == pytest.approx(0.75)


def test_stratified_bootstrap_keeps_runs_within_tasks() -> None:
    s = np.array([[0.0, 100.0], [1.0, 101.0], [2.0, 102.0]])
    rng = np.random.default_rng(0)
    reps = np.concatenate(list(rl.stratified_bootstrap(s, 50, rng, max_chunk=7)))
    assert reps.shape == (50, 3, 2)
    assert set(np.unique(reps[:, :, 0])) <= {0.0, 1.0, 2.0}
    assert set(np.unique(reps[:, :, 1])) <= {100.0, 101.0, 102.0}
    # columns are resampled independently: some replicate pairs rows differently across tasks
    assert np.any(reps[:, :, 1] - reps[:, :, 0] != 100.0)


def test_interval_estimates_contain_point_and_iqm_narrower_than_median() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(10, 8))
    ivs = {m: rl.interval_estimates({"a": scores}, m, reps=1000, seed=0)["a"] for m in ("iqm", "median")}
    for iv in ivs.values():
        assert iv.lo <= iv.point <= iv.hi
    # the paper's finding (Sec. 4.3): IQM is statistically more efficient than the median
    assert ivs["iqm"].hi - ivs["iqm"].lo < ivs["median"].hi - ivs["median"].lo


def test_interval_estimates_deterministic_per_seed() -> None:
    s = np.random.default_rng(2).normal(size=(5, 3))
    a = rl.interval_estimates({"a": s}, "mean", reps=300, seed=7)
    b = rl.interval_estimates({"a": s}, "mean", reps=300, seed=7)
    assert a == b


def test_bootstrap_ci_single_arm() -> None:
    point, lo, hi = rl.bootstrap_ci([0.90, 0.92, 0.91, 0.93, 0.89])
    assert point == pytest.approx(0.91)
    assert 0.89 <= lo < point < hi <= 0.93


@pytest.mark.parametrize("statistic", ["mean", "iqm"])
def test_bootstrap_ci_coverage(statistic: str) -> None:
    """95 % CIs should cover the true mean at about the nominal rate (90-98 % of 200)."""
    rng = np.random.default_rng(123)
    true_mean, covered, n_rep = 0.7, 0, 200
    for rep in range(n_rep):
        # symmetric data, so the trimmed mean (IQM) estimates the same centre as the mean
        values = true_mean + 0.05 * rng.standard_normal(30)
        _, lo, hi = rl.bootstrap_ci(values, statistic=statistic, reps=1000, seed=rep)
        covered += lo <= true_mean <= hi
    assert 0.90 <= covered / n_rep <= 0.98


def test_stratified_ci_coverage_multi_task() -> None:
    rng = np.random.default_rng(321)
    task_means = np.array([0.2, 0.5, 0.9])
    covered = 0
    for rep in range(200):
        scores = task_means + 0.1 * rng.standard_normal((20, 3))
        iv = rl.interval_estimates({"a": scores}, "mean", reps=1000, seed=rep)["a"]
        covered += iv.contains(task_means.mean())
    assert 0.90 <= covered / 200 <= 0.98


def test_poi_ci_and_matrix() -> None:
    rng = np.random.default_rng(3)
    good = 1.0 + rng.normal(size=(6, 4))
    bad = rng.normal(size=(5, 4))
    iv = rl.probability_of_improvement_ci(good, bad, reps=500)
    assert 0.5 < iv.lo <= iv.point <= iv.hi <= 1.0
    names, point, lo, hi = rl.poi_matrix({"good": good, "bad": bad}, reps=200)
    assert names == ["good", "bad"]
    assert point[0, 0] == 0.5
    assert point[0, 1] + point[1, 0] == pytest.approx(1.0)
    assert isinstance(rl.plot_probability_of_improvement(names, point, lo, hi), Figure)


def test_performance_profile() -> None:
    s = np.array([[0.1, 0.5], [0.3, 0.7], [0.2, 0.9]])
    taus = np.array([0.0, 0.25, 0.6, 1.0])
    prof, lo, hi = rl.performance_profile(s, taus, reps=300)
    # fraction of the 6 scores strictly above each tau
    np.testing.assert_allclose(prof, [1.0, 4 / 6, 2 / 6, 0.0])
    assert np.all(lo <= prof + 1e-12) and np.all(prof <= hi + 1e-12)
    assert np.all(np.diff(prof) <= 0)
    fig = rl.plot_performance_profiles({"a": (prof, lo, hi)}, taus)
    assert isinstance(fig, Figure)


# ---- bad input ------------------------------------------------------------------------------
def test_ragged_scores_rejected() -> None:
    with pytest.raises(ValueError, match="rectangular"):
        rl.aggregate([[1.0, 2.0], [3.0]], "mean")


def test_nan_rejected_with_position() -> None:
    with pytest.raises(ValueError, match="run 1, task 0"):
        rl.aggregate([[1.0, 2.0], [np.nan, 3.0]], "iqm")


def test_one_run_ci_rejected() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        rl.interval_estimates({"a": [[1.0, 2.0]]}, "mean")
    with pytest.raises(ValueError, match="at least 2"):
        rl.bootstrap_ci([0.9])
    with pytest.raises(ValueError, match="at least 2"):
        rl.probability_of_improvement_ci([[1.0]], [[1.0], [2.0]])


def test_unknown_metric_rejected() -> None:
    with pytest.raises(ValueError, match="unknown metric 'trimmed'.*iqm"):
        rl.aggregate(X, "trimmed")
    with pytest.raises(ValueError, match="unknown metric"):
        rl.bootstrap_ci([1.0, 2.0], statistic="mode")


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="2-D"):
        rl.aggregate([1.0, 2.0], "mean")
    with pytest.raises(ValueError, match="tasks"):
        rl.probability_of_improvement(X, Y[:, :1])
    with pytest.raises(ValueError, match="same number of tasks"):
        rl.interval_estimates({"a": X, "b": Y[:, :1]})
    with pytest.raises(ValueError, match="1-D"):
        rl.bootstrap_ci([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match="alpha"):
        rl.bootstrap_ci([1.0, 2.0], alpha=1.5)


def test_difference_ci() -> None:
    rng = np.random.default_rng(11)
    a = 0.80 + 0.01 * rng.standard_normal(5)
    iv_same = rl.difference_ci(a, a + 0.0)
    assert iv_same.point == 0.0 and iv_same.contains(0.0)
    iv = rl.difference_ci(a, a - 0.05)
    assert iv.point == pytest.approx(-0.05)
    assert iv.hi < 0
    with pytest.raises(ValueError, match="at least 2"):
        rl.difference_ci([0.8], [0.7, 0.8])


def test_paired_difference_over_common_keys_with_nan_ci_below_two_pairs():
    from tasks.evaluation.rliable import paired_difference

    a = {("digits", 0): 0.9, ("digits", 1): 0.8, ("mnist1d", 0): 0.5, "only_a": 1.0}
    b = {("digits", 0): 0.7, ("digits", 1): 0.9, ("mnist1d", 0): 0.2}
    c = paired_difference(a, b, reps=500)
    assert c["n"] == 3 and c["wins"] == 2
    assert c["diff"] == pytest.approx((0.2 - 0.1 + 0.3) / 3)
    assert c["lo"] <= c["diff"] <= c["hi"]
    one = paired_difference({0: 2.0}, {0: 0.5})
    assert one["diff"] == 1.5 and one["n"] == 1 and np.isnan(one["lo"]) and np.isnan(one["hi"])
