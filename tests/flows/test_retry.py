"""Transient failures retry; bad input does not (it would fail identically again)."""

from flows.run import _retry_transient, stage_task
from tasks.platform.errors import ArtifactError, ParamsError


class _State:
    def __init__(self, exc):
        self.exc = exc

    def result(self):
        raise self.exc


def test_retry_condition():
    assert _retry_transient(None, None, _State(OSError("disk busy")))
    assert _retry_transient(None, None, _State(RuntimeError("worker lost")))
    assert not _retry_transient(None, None, _State(ArtifactError("missing artifact: x")))
    assert not _retry_transient(None, None, _State(ParamsError("bad")))


def test_stage_task_is_configured_to_retry_and_cache():
    assert stage_task.retries == 2
    assert stage_task.cache_key_fn is not None and stage_task.persist_result
    assert stage_task.result_serializer == "json"
