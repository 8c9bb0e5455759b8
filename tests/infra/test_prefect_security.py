"""The served stack's Prefect API: credentials required, only its own origin and host answered."""

from __future__ import annotations

import stat
import urllib.error
import urllib.request

import pytest

from infra.health import basic_auth
from infra.stack import prefect_api_url
from tests.infra.infra_helpers import Stack

pytestmark = pytest.mark.infra


def _status(url: str, method: str = "GET", headers: dict[str, str] | None = None, body: bytes | None = None) -> int:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def test_prefect_api_needs_credentials_and_refuses_other_origins(stack: Stack) -> None:
    api = prefect_api_url(stack.cfg, stack.state)
    auth = stack.env["PREFECT_API_AUTH_STRING"]
    post = {"Content-Type": "application/json"}
    assert _status(f"{api}/health") == 200  # probes stay open
    assert _status(f"{api}/flows/filter", "POST", post, b"{}") == 401
    assert _status(f"{api}/flows/filter", "POST", {**post, **basic_auth("reprolab:wrong")}, b"{}") == 401
    assert _status(f"{api}/flows/filter", "POST", {**post, **basic_auth(auth)}, b"{}") == 200
    foreign = {**post, **basic_auth(auth), "Origin": "http://evil.example"}
    assert _status(f"{api}/flows/filter", "POST", foreign, b"{}") == 403
    assert _status(f"{api}/health", headers={"Host": "evil.example"}) == 400
    secret = stack.cfg.stack_dir / "prefect-auth"
    assert secret.read_text().strip() == auth
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
