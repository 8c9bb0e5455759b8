"""tasks.progress: progress lines reach whichever logger the orchestrator forwards them to."""

from __future__ import annotations

import logging
import time

from tasks.platform import progress


class _Sink:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, level: int, msg: str, *args: object) -> None:
        self.lines.append(msg % args if args else msg)


def test_first_and_last_step_always_print_the_rest_are_rate_limited(monkeypatch):
    monkeypatch.setenv("REPROLAB_PROGRESS_SECONDS", "1000")
    sink = _Sink()
    with progress.forward(sink):
        for i in range(1, 6):
            progress.progress("test-epoch", i, 5, val_loss=0.5 / i)
    assert sink.lines == ["test-epoch 1/5 val_loss=0.5", "test-epoch 5/5 val_loss=0.1"]


def test_every_step_prints_without_rate_limit(monkeypatch):
    monkeypatch.setenv("REPROLAB_PROGRESS_SECONDS", "0")
    sink = _Sink()
    with progress.forward(sink):
        for i in range(1, 4):
            progress.progress("test-seed", i, 3, seed=10 + i)
    assert sink.lines == ["test-seed 1/3 seed=11", "test-seed 2/3 seed=12", "test-seed 3/3 seed=13"]


def test_innermost_target_wins_and_nothing_is_left_attached():
    outer, inner = _Sink(), _Sink()
    with progress.forward(outer):
        progress.progress("test-a", 1, 1)
        with progress.forward(inner):
            progress.progress("test-b", 1, 1)
        progress.progress("test-c", 1, 1)
    assert outer.lines == ["test-a 1/1", "test-c 1/1"] and inner.lines == ["test-b 1/1"]
    assert progress.LOGGER.handlers == [] and progress.LOGGER.propagate


def test_stage_records_where_the_pipeline_is(caplog):
    started = time.perf_counter() - 65
    with caplog.at_level(logging.INFO, logger=progress.LOGGER.name):
        progress.stage("nm_sparsity", "train_digits", 2, 17, started, 1, ["prepare_digits"])
    assert "stage 2/17 train_digits (elapsed 1:05, 1 done; reused so far: prepare_digits)" in caplog.text
    assert progress.current() == "nm_sparsity stage train_digits (2 of 17, 1:05 in)"
    progress.finish()
    assert progress.current() is None
