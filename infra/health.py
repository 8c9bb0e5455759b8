"""Bounded health and preflight probes for the served stack.

Every probe returns quickly or raises :class:`ServiceUnavailable` whose message names the service
and the address, so a wrong password or a dead endpoint is a clear error, never a hang.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class ServiceUnavailable(RuntimeError):
    """A service of the stack cannot be reached or rejected us; the message names it."""


def check_postgres(url: str, timeout: float, dbname: str = "postgres") -> None:
    """Connect to PostgreSQL at ``url`` (``postgresql://user:pw@host:port``) and run ``SELECT 1``.

    Raises:
        ServiceUnavailable: refused connection, bad password or timeout (message names PostgreSQL).
    """
    import psycopg2  # local import: only the stack and its tests need the driver

    dsn = f"{url.rstrip('/')}/{dbname}"
    where = redact(url)
    try:
        conn = psycopg2.connect(dsn, connect_timeout=max(1, int(timeout)))
    except psycopg2.OperationalError as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if "password authentication failed" in str(exc):
            detail = f"password authentication failed (check REPROLAB_PG_PASSWORD / REPROLAB_PG_URL): {detail}"
        raise ServiceUnavailable(f"PostgreSQL at {where} is not usable: {detail}") from None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    finally:
        conn.close()


def check_s3(endpoint: str, access_key: str, secret_key: str, bucket: str, timeout: float) -> None:
    """List one key of ``bucket`` on the S3 store, with no retries and bounded connect/read timeouts.

    Raises:
        ServiceUnavailable: endpoint unreachable, credentials rejected or bucket missing.
    """
    import boto3
    import botocore.config
    import botocore.exceptions

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=botocore.config.Config(
            connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1, "mode": "standard"}
        ),
    )
    try:
        client.list_objects_v2(Bucket=bucket, MaxKeys=1)
    except botocore.exceptions.EndpointConnectionError:
        raise ServiceUnavailable(f"S3 store at {endpoint} is unreachable (connection refused or timed out)") from None
    except (botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError):
        raise ServiceUnavailable(f"S3 store at {endpoint} did not answer within {timeout:g} s") from None
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        raise ServiceUnavailable(f"S3 store at {endpoint}: bucket {bucket!r} not usable (error {code})") from None


def basic_auth(auth: str | None) -> dict[str, str]:
    """``Authorization`` header for ``user:password`` (none for ``None``)."""
    if not auth:
        return {}
    import base64

    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


def check_http(service: str, url: str, timeout: float, auth: str | None = None) -> dict | str:
    """GET ``url`` (with basic ``auth``, ``user:password``, if given); returns the decoded JSON
    (or text) of a 200 answer.

    Raises:
        ServiceUnavailable: refused, timed out or not 200 (message names ``service``).
    """
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=basic_auth(auth)), timeout=timeout) as resp:  # noqa: S310 - loopback/configured URL
            body = resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        raise ServiceUnavailable(f"{service} at {url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServiceUnavailable(f"{service} at {url} is unreachable: {reason}") from None
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        return body


def post_json(service: str, url: str, payload: object, timeout: float, auth: str | None = None) -> dict | list | None:
    """POST ``payload`` as JSON; returns the decoded answer. Auth and errors as in :func:`check_http`."""
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **basic_auth(auth)})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback/configured URL
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise ServiceUnavailable(f"{service} at {url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ServiceUnavailable(f"{service} at {url} is unreachable: {getattr(exc, 'reason', exc)}") from None


def wait_until(probe: Callable[[], T], *, timeout: float, interval: float = 0.25,
               alive: Callable[[], bool] | None = None, what: str = "service") -> T:
    """Call ``probe`` until it stops raising :class:`ServiceUnavailable`, for at most ``timeout`` s.

    ``alive`` (optional) is checked between attempts so that a crashed process fails at once
    instead of after the whole timeout.
    """
    deadline = time.monotonic() + timeout
    last: ServiceUnavailable | None = None
    while True:
        try:
            return probe()
        except ServiceUnavailable as exc:
            last = exc
        if alive is not None and not alive():
            raise ServiceUnavailable(f"{what} exited during start-up (last probe: {last})")
        if time.monotonic() >= deadline:
            raise ServiceUnavailable(f"{what} not healthy after {timeout:g} s (last probe: {last})")
        time.sleep(interval)


def redact(url: str) -> str:
    """Hide the password in ``scheme://user:pw@host`` URLs for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, hostpart = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hostpart}"
