"""``python -m flows.server``: the project's Prefect server answers only its own origin and host,
records itself for ``make run``/``make serve``, and stops promptly on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from flows import local

ROOT = Path(__file__).resolve().parents[2]


def _request(url: str, method: str = "GET", headers: dict[str, str] | None = None, body: bytes | None = None):
    """``(status, headers)`` of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    port = local.free_port()
    env = {**os.environ, "PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "flows.server", "--port", str(port), "--no-ui"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not local.healthy(f"{base}/api", 1.0):
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.3)
        yield base, home, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_foreign_origin_is_refused(server):
    base, _, _ = server
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    status, headers = _request(f"{base}/api/flows/filter", "OPTIONS", preflight)
    assert status == 403
    assert "access-control-allow-origin" not in headers
    # a "simple" cross-site POST is refused too, not only hidden from the page
    status, headers = _request(f"{base}/api/flows/filter", "POST",
                               {"Origin": "http://evil.example", "Content-Type": "application/json"}, b"{}")
    assert status == 403
    assert "access-control-allow-origin" not in headers


def test_own_origin_is_allowed(server):
    base, _, _ = server
    preflight = {"Origin": base, "Access-Control-Request-Method": "POST"}
    status, headers = _request(f"{base}/api/flows/filter", "OPTIONS", preflight)
    assert status == 200
    assert headers["access-control-allow-origin"] == base
    status, _ = _request(f"{base}/api/flows/filter", "POST", {"Origin": base, "Content-Type": "application/json"}, b"{}")
    assert status == 200


def test_foreign_host_is_refused(server):
    base, _, _ = server
    assert _request(f"{base}/api/health", headers={"Host": "evil.example"})[0] == 400
    assert _request(f"{base}/api/health", headers={"Host": f"localhost:{base.rsplit(':', 1)[1]}"})[0] == 200


def test_records_itself_as_the_project_server(server, monkeypatch):
    base, home, proc = server
    info = json.loads((home / local.STATE_FILE).read_text())
    assert info == {"pid": proc.pid, "api_url": f"{base}/api", "ui_url": base}
    monkeypatch.setenv("PREFECT_HOME", str(home))
    assert local.project_server_url() == f"{base}/api"


def test_port_in_use_is_a_clear_error(server):
    base, home, _ = server
    port = base.rsplit(":", 1)[1]
    out = subprocess.run([sys.executable, "-m", "flows.server", "--port", port], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, "PREFECT_HOME": str(home)}, timeout=120)
    assert out.returncode == 2
    assert f"port {port}" in out.stderr and "already in use" in out.stderr


def test_ctrl_c_stops_it_and_removes_its_record(server):
    base, home, proc = server
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert not (home / local.STATE_FILE).exists()
    assert local.project_server_url() is None or not local.healthy(f"{base}/api", 1.0)


def test_serve_without_a_server_exits_2_with_the_command(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path)  # no server recorded here
    out = subprocess.run([sys.executable, "-m", "flows", "serve"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert "make ui" in out.stderr and "PREFECT_API_URL" in out.stderr
    assert "Traceback" not in out.stderr
