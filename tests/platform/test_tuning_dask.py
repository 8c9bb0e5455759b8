"""Tuning trials fanned out on Dask (tasks/platform/tuning.py: DaskTrials, trial_runner).

The contract under test: the same study run in process and on a Dask cluster gives the same
trials, the same chosen configurations and the same cache records, at any batch size, and the
equal-budget checks hold on either path. The cluster is in-process (threads) so the test stays
fast; the fits of each round still run off the driver's thread, on the workers.
"""

from __future__ import annotations

import threading

import pytest

from tasks.platform.errors import ReprolabError
from tasks.platform.tuning import (
    BudgetError,
    DaskTrials,
    SequentialTrials,
    TrialStore,
    TuningBudget,
    check_equal_budget,
    run_study,
    trial_runner,
)
from tests.platform.test_tuning import SETTING, SPACE, quadratic

SPACES = {"a": SPACE, "b": {"lr": SPACE["lr"]}, "c": {"depth": SPACE["depth"]}}
SETTINGS = {arm: SETTING for arm in SPACES}


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as lc, \
            Client(lc, set_as_default=False) as client:
        yield lc, client


def run(trials, *, n_trials=7, batch=1, fit_score=quadratic, store=None):
    budget = TuningBudget(n_trials=n_trials, seeds=(0, 1), sampler_seed=3, batch=batch)
    return run_study(SETTINGS, SPACES, budget, fit_score, val={"target": -1.5}, store=store, trials=trials)


@pytest.mark.parametrize("batch", [1, 3])
def test_dask_gives_the_sequential_trials_for_the_same_seed(cluster, batch):
    _, client = cluster
    threads: set[str] = set()

    def recording(arm, config, seed, split):
        threads.add(threading.current_thread().name)
        return quadratic(arm, config, seed, split)

    seq = run(SequentialTrials(), batch=batch)
    fanned = run(DaskTrials(client=client), batch=batch, fit_score=recording)
    assert fanned.trials.equals(seq.trials)
    assert fanned.to_json() == seq.to_json()
    assert {a: r.tuned for a, r in fanned.arms.items()} == {a: r.tuned for a, r in seq.arms.items()}
    assert fanned.stats["runner"] == "dask" and seq.stats["runner"] == "sequential"
    assert fanned.stats["rounds"] == seq.stats["rounds"] == -(-7 // batch)
    # arms x trials x seeds, each distinct fit once (arm c's small space repeats configurations)
    assert fanned.stats["fits_computed"] + fanned.stats["fits_reused"] == 3 * 7 * 2
    assert fanned.stats["fits_computed"] == seq.stats["fits_computed"]
    assert threads and threading.current_thread().name not in threads  # the fits ran on the workers
    check_equal_budget(fanned.trials, fanned.budget)


def test_batch_is_part_of_the_search_and_of_the_budget(cluster):
    _, client = cluster
    one, three = run(DaskTrials(client=client), batch=1), run(DaskTrials(client=client), batch=3)
    assert one.to_json()["budget"]["batch"] == 1 and three.to_json()["budget"]["batch"] == 3
    # The paper's setting is trial 0 either way. (Within TPE's first 10, random, trials the
    # batch changes nothing; after them a batch samples from less history.)
    assert one.trials.slice(0, 1).equals(three.trials.slice(0, 1))
    assert one.stats["rounds"] == 7 and three.stats["rounds"] == 3
    for res in (one, three):
        per_arm = res.trials.group_by("arm").aggregate([("trial", "count")]).column("trial_count").to_pylist()
        assert per_arm == [7, 7, 7]


def test_an_arm_that_trains_more_epochs_is_refused_on_dask(cluster):
    _, client = cluster

    def greedy(arm, config, seed, split):
        score, epochs = quadratic(arm, config, seed, split)
        return score, epochs + (arm == "c")

    with pytest.raises(BudgetError, match="arm 'c' trained 4 epochs in a trial whose budget is 3"):
        run(DaskTrials(client=client), fit_score=greedy)


def test_a_fit_error_on_a_worker_reaches_the_study(cluster):
    _, client = cluster

    def broken(arm, config, seed, split):
        raise ReprolabError(f"arm {arm}: no data")

    with pytest.raises(ReprolabError, match="no data"):
        run(DaskTrials(client=client), fit_score=broken)


def test_cached_trials_are_not_sent_to_dask_again(cluster, tmp_path):
    _, client = cluster
    store = TrialStore(tmp_path)
    first = run(SequentialTrials(), store=store)
    again = run(DaskTrials(client=client), store=store)
    assert again.stats["fits_computed"] == 0 and again.stats["fits_reused"] == 3 * 7 * 2
    assert again.trials.equals(first.trials)


def test_the_runner_follows_the_served_stacks_dask_address(cluster, monkeypatch):
    lc, _ = cluster
    monkeypatch.delenv("REPROLAB_DASK_ADDRESS", raising=False)
    assert isinstance(trial_runner(), SequentialTrials)
    monkeypatch.setenv("REPROLAB_DASK_ADDRESS", lc.scheduler_address)
    runner = trial_runner()
    assert isinstance(runner, DaskTrials) and runner.address == lc.scheduler_address
    res = run_study(SETTINGS, SPACES, TuningBudget(n_trials=3), quadratic, val={"target": -1.5})
    assert res.stats["runner"] == "dask"
    assert runner.client is None  # a client it opened is closed again
    with pytest.raises(ReprolabError, match="exactly one of client= or address="):
        DaskTrials()
