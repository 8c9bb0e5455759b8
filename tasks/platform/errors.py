"""The one error type a user sees for bad input: it names the file, key or value.

Also the retry rule (:func:`is_transient`): only failures that may succeed when tried
again are retried (a lost connection, a timeout, a busy resource, or an error explicitly
raised as :class:`TransientError`). Bad input and deterministic bugs (``ValueError``,
``TypeError``, ``RuntimeError``, a missing file, ...) fail at once.
"""

from __future__ import annotations

import errno


class ReprolabError(ValueError):
    """Bad input (params, artifact, CLI argument). The message names the offending thing."""


class ParamsError(ReprolabError):
    """``params.yaml`` (or an override) failed validation; raised before any work starts."""


class ArtifactError(ReprolabError):
    """A missing, corrupted or schema-mismatched artifact file."""


class TransientError(RuntimeError):
    """A failure that may succeed when retried (raise it, or ``raise ... from`` it, to ask for a retry)."""


#: Exception types that are transient by nature.
TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    TransientError, TimeoutError, ConnectionError, InterruptedError, BlockingIOError,
)
#: ``OSError.errno`` values that are transient (a busy or temporarily unavailable resource).
TRANSIENT_ERRNOS = frozenset(
    {errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNREFUSED,
     errno.ECONNABORTED, errno.EPIPE, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENOBUFS, errno.ENOMEM}
)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the work that raised ``exc`` may succeed.

    Bad input (:class:`ReprolabError`) anywhere in the cause chain is never transient.
    Otherwise ``exc`` or an exception it was raised from must be a :data:`TRANSIENT_TYPES`
    instance or an ``OSError`` with a :data:`TRANSIENT_ERRNOS` errno. Everything else
    (``ValueError``, ``TypeError``, ``RuntimeError``, ``FileNotFoundError``, ...) would fail
    again identically and is not retried.
    """
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    if any(isinstance(e, ReprolabError) for e in chain):
        return False
    return any(
        isinstance(e, TRANSIENT_TYPES) or (isinstance(e, OSError) and e.errno in TRANSIENT_ERRNOS) for e in chain
    )
