"""Ctrl-C and SIGTERM for ``python -m flows run``: stop within seconds, say what stopped, exit 130/143.

The first SIGINT/SIGTERM raises ``KeyboardInterrupt`` in the main thread, where the flow and
its stage tasks run (at once inside a stage's compute, else at the flow's next safe point,
see :func:`deferred`): Prefect marks the task and flow runs Crashed ("aborted by an interrupt
signal") on the still-running server, ``flows.run.run_pipeline`` ends its MLflow run KILLED,
and ``python -m flows`` prints one line and exits ``128 + signal``. (During a flow, Prefect's
own SIGTERM bridge raises ``TerminationSignal`` first and then re-sends the signal to this
handler.) From the first signal on, console log handlers are silenced, so the terminal gets
that one line and no tracebacks; the Prefect run logs still receive everything.

A watchdog ends the process ``GRACE_SECONDS`` after the first signal, whatever it is doing
(a long native call, a hung connection); later signals are ignored.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

GRACE_SECONDS = 8.0
_received: int | None = None
_cleanup: list[Callable[[], None]] = []
_message: Callable[[int], str] = lambda signum: f"interrupted by {signal.Signals(signum).name}"
_text = ""


_raise_now = True  # False inside a flow run, outside a stage's compute: see deferred()


@contextmanager
def deferred() -> Iterator[None]:
    """Inside the block (a flow run), a signal is only recorded; it raises at the next
    :func:`checkpoint` or on entering :func:`raising`. NOTE: a ``KeyboardInterrupt`` landing
    inside Prefect's engine (creating a task run, persisting a result) was seen to surface as
    an unrelated error ("Task run is not set") and a Failed flow run instead of Crashed."""
    global _raise_now
    prev, _raise_now = _raise_now, False
    try:
        yield
    finally:
        _raise_now = prev


@contextmanager
def raising() -> Iterator[None]:
    """Inside the block (a stage's compute), a signal raises ``KeyboardInterrupt`` at once."""
    global _raise_now
    prev, _raise_now = _raise_now, True
    try:
        checkpoint()
        yield
    finally:
        _raise_now = prev


def checkpoint() -> None:
    """Raise ``KeyboardInterrupt`` if a signal was received (a safe point of the flow)."""
    if _received is not None and threading.current_thread() is threading.main_thread():
        raise KeyboardInterrupt


def received() -> int | None:
    """The first signal received (``signal.SIGINT``/``SIGTERM``), or ``None``."""
    return _received


def exit_code(signum: int) -> int:
    return 128 + int(signum)


def install(message: Callable[[int], str], cleanup: Callable[[], None]) -> None:
    """Handle SIGINT/SIGTERM from now on (main thread only).

    Args:
        message: builds the one line printed on interruption (from the signal number).
        cleanup: what the watchdog runs before forcing the exit (e.g. stop a temporary server).
    """
    global _message
    _message = message
    _cleanup.append(cleanup)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _handler)


def _handler(signum: int, frame: object) -> None:
    global _received
    if _received is not None:
        return  # already stopping; the watchdog bounds how long that takes
    _received = signum
    global _text
    _text = _message(signum)  # now, while the interrupted stage is still the current one
    silence_console()
    threading.Thread(target=_watchdog, name="reprolab-interrupt-watchdog", daemon=True).start()
    if _raise_now:
        raise KeyboardInterrupt


class _QuietCrash(logging.Filter):
    """Drop, on the console only, Prefect's report of the crash this interruption causes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _received is not None:
            return False
        msg = record.getMessage()
        return not ("aborted by a termination signal" in msg or "aborted by an interrupt signal" in msg)


_quiet = _QuietCrash()


def _console_handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger(), *[lg for lg in logging.Logger.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger)]]
    return [h for lg in loggers for h in lg.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


def quiet_console() -> None:
    """Keep the console free of the crash report of an interruption (call once Prefect's logging
    is set up: Prefect reports a SIGTERM through its own handler before this module's runs)."""
    for h in _console_handlers():
        if _quiet not in h.filters:
            h.addFilter(_quiet)


def silence_console() -> None:
    """Mute every handler that writes to a terminal stream (Prefect's console, lastResort)."""
    for h in _console_handlers():
        h.setLevel(logging.CRITICAL + 1)
    logging.lastResort = None
    import warnings

    warnings.simplefilter("ignore")


def report() -> None:
    """Print the one interruption line (stderr)."""
    global _text
    if _received is not None and _text:
        print(_text, file=sys.stderr, flush=True)
        _text = ""  # once


def _watchdog() -> None:
    time.sleep(GRACE_SECONDS)
    if os.environ.get("REPROLAB_DEBUG_INTERRUPT"):
        import faulthandler

        faulthandler.dump_traceback(all_threads=True)
    report()
    for fn in _cleanup:
        try:
            fn()
        except Exception:  # noqa: BLE001 - best effort: the process exits next whatever happens
            pass
    os._exit(exit_code(_received or signal.SIGINT))
