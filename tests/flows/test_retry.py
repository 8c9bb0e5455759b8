"""Only transient failures retry; bad input and deterministic errors fail at once."""

import errno
import sqlite3

import pytest

from flows.run import _retry_transient, stage_task
from tasks.platform.errors import ArtifactError, ParamsError, TransientError, is_transient


class _State:
    def __init__(self, exc=None):
        self.exc = exc

    def result(self):
        if self.exc is not None:
            raise self.exc
        return {}


def _raised_from(exc: BaseException, cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as c:
            raise exc from c
    except BaseException as e:  # noqa: BLE001 - the test builds a real cause chain
        return e


TRANSIENT = [
    OSError(errno.EBUSY, "device or resource busy"),
    OSError(errno.EAGAIN, "resource temporarily unavailable"),
    TimeoutError("read timed out"),
    ConnectionResetError("connection reset by peer"),
    TransientError("queue full, try later"),
    _raised_from(RuntimeError("upload failed"), ConnectionRefusedError("refused")),
]
DETERMINISTIC = [
    ValueError("unknown model arch 'resnet'"),  # the probe's #38: was retried twice
    ValueError("-1 is not in bounds"),  # #14
    TypeError("unsupported operand"),
    RuntimeError("Trying to create tensor with negative dimension -8"),  # #56
    KeyError("x"),
    FileNotFoundError(errno.ENOENT, "No such file"),
    PermissionError(errno.EACCES, "Permission denied"),
    OSError("disk busy"),  # no errno: nothing says it is transient
    sqlite3.DatabaseError("file is not a database"),
    ArtifactError("missing artifact: x"),
    ParamsError("bad"),
    _raised_from(ArtifactError("corrupted artifact x"), TimeoutError("slow disk")),  # bad input wins
]


@pytest.mark.parametrize("exc", TRANSIENT, ids=lambda e: type(e).__name__)
def test_transient_failures_retry(exc):
    assert is_transient(exc)
    assert _retry_transient(None, None, _State(exc))


@pytest.mark.parametrize("exc", DETERMINISTIC, ids=lambda e: type(e).__name__)
def test_deterministic_failures_do_not_retry(exc):
    assert not is_transient(exc)
    assert not _retry_transient(None, None, _State(exc))


def test_a_completed_state_is_not_retried():
    assert not _retry_transient(None, None, _State())


def test_stage_task_is_configured_to_retry_and_cache():
    assert stage_task.retries == 2
    assert stage_task.retry_condition_fn is _retry_transient
    assert stage_task.cache_key_fn is not None and stage_task.persist_result
    assert stage_task.result_serializer == "json"
