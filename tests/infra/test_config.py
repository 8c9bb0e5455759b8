"""Stack configuration: profiles, env overrides, clear errors; process bookkeeping (no servers)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.config import PROFILES_DIR, SETTINGS, StackConfigError, load_config, read_profile
from infra.health import ServiceUnavailable, check_http, redact, wait_until
from infra.stack import Proc, StackState, _start_ticks, client_env, is_running, stop_proc


def test_defaults_are_loopback_and_free_ports() -> None:
    cfg = load_config({})
    assert cfg.host == "127.0.0.1"
    assert (cfg.pg_port, cfg.s3_port, cfg.mlflow_port, cfg.prefect_port) == (0, 0, 0, 0)
    assert cfg.stack_dir.parts[-2:] == (".reprolab", "stack")
    assert cfg.manages_postgres and cfg.manages_s3 and cfg.manages_mlflow and cfg.manages_prefect


def test_every_shipped_profile_loads() -> None:
    profiles = sorted(p.stem for p in PROFILES_DIR.glob("*.env"))
    assert {"local", "lab", "external"} <= set(profiles)
    for name in profiles:
        load_config({"REPROLAB_PROFILE": name})
    external = load_config({"REPROLAB_PROFILE": "external"})
    assert not (external.manages_postgres or external.manages_s3 or external.manages_mlflow
                or external.manages_prefect)


def test_environment_overrides_profile() -> None:
    cfg = load_config({"REPROLAB_PROFILE": "lab", "REPROLAB_MLFLOW_PORT": "5123"})
    assert cfg.mlflow_port == 5123
    assert cfg.prefect_port == 4200  # from the profile


def test_profile_errors_name_the_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "bad.env").write_text("REPROLAB_HOST=127.0.0.1\nREPROLAB_PG_PROT=5\n")
    with pytest.raises(StackConfigError, match=r"bad\.env:2: unknown setting 'REPROLAB_PG_PROT'"):
        read_profile("bad", tmp_path)
    (tmp_path / "worse.env").write_text("just words\n")
    with pytest.raises(StackConfigError, match=r"worse\.env:1: expected KEY=VALUE"):
        read_profile("worse", tmp_path)
    with pytest.raises(StackConfigError, match="profile 'nope' not found"):
        load_config({"REPROLAB_PROFILE": "nope"})


@pytest.mark.parametrize("key, value, message", [
    ("REPROLAB_PG_PORT", "fivethousand", "REPROLAB_PG_PORT='fivethousand' is not an integer"),
    ("REPROLAB_S3_PORT", "70000", "REPROLAB_S3_PORT='70000' is out of range"),
    ("REPROLAB_START_TIMEOUT", "-1", "REPROLAB_START_TIMEOUT='-1' must be > 0"),
    ("REPROLAB_PG_URL", "localhost:5432", "REPROLAB_PG_URL='localhost:5432' is not a URL"),
])
def test_bad_values_are_named(key: str, value: str, message: str) -> None:
    with pytest.raises(StackConfigError, match=message.replace("(", r"\(")):
        load_config({key: value})


def test_client_env_is_quiet_and_complete(tmp_path: Path) -> None:
    cfg = load_config({"REPROLAB_STACK_DIR": str(tmp_path), "REPROLAB_PREFECT_PORT": "4321"})
    env = client_env(cfg, StackState())
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4321/api"
    assert env["MLFLOW_TRACKING_URI"].startswith("http://127.0.0.1:")
    assert env["DO_NOT_TRACK"] == "1" and env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["DVC_NO_ANALYTICS"] == "1" and env["AWS_EC2_METADATA_DISABLED"] == "true"
    assert set(SETTINGS) >= {"REPROLAB_STACK_DIR", "REPROLAB_DASK_ADDRESS"}


def test_redact_hides_passwords() -> None:
    assert redact("postgresql://u:secret@h:5/db") == "postgresql://u:***@h:5/db"
    assert redact("http://h:5") == "http://h:5"


def test_unreachable_http_is_named_and_bounded() -> None:
    t0 = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="MLflow server at http://127.0.0.1:9/health is unreachable"):
        check_http("MLflow server", "http://127.0.0.1:9/health", timeout=2)
    with pytest.raises(ServiceUnavailable, match="not healthy after 0.5 s"):
        wait_until(lambda: check_http("X", "http://127.0.0.1:9/", 1), timeout=0.5, what="X")
    assert time.monotonic() - t0 < 10


def test_stop_proc_stops_by_pid_and_refuses_reused_pids() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        ticks = _start_ticks(child.pid)
        assert ticks is not None
        stale = Proc(pid=child.pid, start_ticks=ticks + 1, log="-")  # same PID, another process
        assert not is_running(stale) and not stop_proc("x", stale)
        assert child.poll() is None
        proc = Proc(pid=child.pid, start_ticks=ticks, log="-", signal=int(signal.SIGTERM))
        assert is_running(proc)
        assert stop_proc("x", proc, timeout=10)
        assert child.wait(timeout=10) == -signal.SIGTERM
    finally:
        child.kill()


def test_missing_deps_are_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import infra.stack as stack_mod

    monkeypatch.setattr(stack_mod, "S3RVER_JS", tmp_path / "node_modules" / "s3rver" / "bin" / "s3rver.js")
    monkeypatch.setattr(stack_mod, "postgres_bindir", lambda: None)
    missing = stack_mod.missing_deps(load_config({}))
    assert any("postgresql" in m for m in missing) and any("s3rver" in m for m in missing)
    with pytest.raises(stack_mod.StackError, match=r"run `make infra-deps`"):
        stack_mod.up(load_config({"REPROLAB_STACK_DIR": str(tmp_path / "stack")}))
    # External services need nothing installed locally.
    assert stack_mod.missing_deps(load_config({"REPROLAB_PROFILE": "external"})) == []
