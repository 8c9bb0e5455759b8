"""Progress of long loops (epochs, seeds, shadow models) and of a pipeline's stages, as log lines.

Knows no orchestrator: lines go to the standard ``logging`` logger ``reprolab.progress``.
The Prefect flows (``flows/run.py``) forward them to the run's logger with :func:`forward`,
so they appear in the terminal and in the Prefect run's logs; anything else (a test, a
notebook) sees them by configuring that logger.

    progress("epoch", 3, 30, val_loss=0.41)   # "epoch 3/30 val_loss=0.41"

Lines of one loop are rate-limited to one per ``REPROLAB_PROGRESS_SECONDS`` (default 2 s);
the first and the last step always print. :func:`stage` also records which stage is
running, which :func:`current` reports (an interrupted run says what it interrupted).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Protocol

LOGGER = logging.getLogger("reprolab.progress")


class _LogTarget(Protocol):
    def log(self, level: int, msg: str, *args: object) -> None: ...


@dataclass
class _Where:
    paper: str
    stage: str
    index: int
    total: int
    started: float  # time.perf_counter() when the pipeline started


_where: _Where | None = None
_last: dict[str, float] = {}
_targets: list[_LogTarget] = []
_lock = threading.Lock()


def _interval() -> float:
    try:
        return float(os.environ.get("REPROLAB_PROGRESS_SECONDS", "2"))
    except ValueError:
        return 2.0


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def progress(unit: str, i: int, n: int, **values: object) -> None:
    """Log ``"<unit> i/n k=v ..."`` for step ``i`` (counted from 1) of ``n``.

    Rate-limited per ``unit`` (see the module docstring); step 1 and step ``n`` always log.
    """
    now = time.perf_counter()
    with _lock:
        if 1 < i < n and now - _last.get(unit, float("-inf")) < _interval():
            return
        _last[unit] = now
    extra = " ".join(f"{k}={_fmt(v)}" for k, v in values.items())
    LOGGER.info("%s %d/%d%s", unit, i, n, f" {extra}" if extra else "")


def stage(paper: str, name: str, i: int, n: int, started: float, done: int, reused: list[str]) -> None:
    """Record and log that stage ``i`` of ``n`` of ``paper`` starts (``started``: perf_counter start)."""
    global _where
    _where = _Where(paper, name, i, n, started)
    elapsed = time.perf_counter() - started
    note = f"; reused so far: {', '.join(reused)}" if reused else ""
    LOGGER.info("stage %d/%d %s (elapsed %s, %d done%s)", i, n, name, _clock(elapsed), done, note)


def finish() -> None:
    """The pipeline ended: nothing is running any more."""
    global _where
    _where = None


def current() -> str | None:
    """``"nm_sparsity stage train_digits (4 of 17, 0:41 in)"`` while a stage runs, else ``None``."""
    w = _where
    if w is None:
        return None
    return f"{w.paper} stage {w.stage} ({w.index} of {w.total}, {_clock(time.perf_counter() - w.started)} in)"


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


class _Forward(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if _targets:
            _targets[-1].log(record.levelno, record.getMessage())


_handler = _Forward()


@contextmanager
def forward(target: _LogTarget) -> Iterator[None]:
    """Send progress lines to ``target`` (a logger or adapter) inside the block; innermost wins."""
    with _lock:
        _targets.append(target)
        if _handler not in LOGGER.handlers:
            LOGGER.addHandler(_handler)
            LOGGER.setLevel(logging.INFO)
            LOGGER.propagate = False  # the target prints them; no second copy via the root logger
    try:
        yield
    finally:
        with _lock:
            _targets.remove(target)
            if not _targets:
                LOGGER.removeHandler(_handler)
                LOGGER.propagate = True
