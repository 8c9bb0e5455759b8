"""Start, stop and inspect reprolab's served stack on one host.

Services (each *managed* unless its external URL is configured, see ``infra.config``):

=========  ==========================================================================
postgres   one cluster (``initdb`` + ``postgres`` as the ``postgres`` OS user when root),
           databases ``prefect`` and ``mlflow``, scram-sha-256 password auth over TCP
s3         s3rver (file-backed S3 API) with one bucket: ``mlflow/`` artifacts, ``dvc/`` remote
mlflow     ``mlflow server`` on PostgreSQL, ``--serve-artifacts`` into the S3 bucket
prefect    ``prefect server start`` on PostgreSQL (scheduler included)
worker     ``prefect worker start`` on a process work pool; flow runs inherit the client env
=========  ==========================================================================

Layout under ``REPROLAB_STACK_DIR``: ``stack.json`` (ports, PIDs), ``logs/<service>.log``,
``postgres/``, ``s3/``, ``prefect/`` (PREFECT_HOME), ``client.env`` (what clients export).
Every process is started in its own session and stopped by its PID (its process group), after
checking that the PID still belongs to the process we started.

CLI: ``python -m infra.stack up|down|status|env|check|restart <service>``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from infra.config import QUIET_ENV, REPO_ROOT, StackConfig, StackConfigError, load_config
from infra.health import (
    ServiceUnavailable,
    redact,
    check_http,
    check_postgres,
    check_s3,
    post_json,
    wait_until,
)
from tasks.platform.artifacts import atomic_write_bytes

SERVICES = ("postgres", "s3", "mlflow", "prefect", "worker")
S3RVER_JS = REPO_ROOT / "infra" / "node_modules" / "s3rver" / "bin" / "s3rver.js"
DATABASES = ("prefect", "mlflow")
STOP_TIMEOUT = 20.0


class StackError(RuntimeError):
    """The stack cannot be brought up/down as asked; the message names the service and its log."""


# --------------------------------------------------------------------------------------------
# dependencies


def postgres_bindir() -> Path | None:
    """Directory with ``initdb``/``postgres``: PATH first, then Debian's /usr/lib/postgresql/<v>/bin."""
    found = shutil.which("initdb")
    if found:
        real = Path(found).resolve().parent
        if (real / "postgres").exists():
            return real
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return candidates[-1].parent if candidates else None


def missing_deps(cfg: StackConfig | None = None) -> list[str]:
    """What ``make infra-deps`` installs and is not there (empty list = ready)."""
    cfg = cfg or load_config()
    missing = []
    if cfg.manages_postgres and postgres_bindir() is None:
        missing.append("PostgreSQL server binaries (Debian package 'postgresql')")
    if cfg.manages_s3:
        if shutil.which("node") is None:
            missing.append("node (Debian package 'nodejs')")
        if not S3RVER_JS.exists():
            missing.append(f"s3rver ({S3RVER_JS})")
    return missing


# --------------------------------------------------------------------------------------------
# state


@dataclass
class Proc:
    """A process we started: its PID, its kernel start time (guards against PID reuse), its log."""

    pid: int
    start_ticks: int
    log: str
    signal: int = signal.SIGTERM
    group: bool = True  # signal the whole process group (servers with workers/children)


@dataclass
class StackState:
    """What ``up`` resolved and started; persisted as ``<stack_dir>/stack.json``."""

    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, Proc] = field(default_factory=dict)

    @classmethod
    def load(cls, cfg: StackConfig) -> StackState:
        path = cfg.stack_dir / "stack.json"
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text())
        return cls(ports=raw.get("ports", {}), procs={k: Proc(**v) for k, v in raw.get("procs", {}).items()})

    def save(self, cfg: StackConfig) -> None:
        data = {"ports": self.ports, "procs": {k: vars(v) for k, v in self.procs.items()}}
        _atomic_write(cfg.stack_dir / "stack.json", json.dumps(data, indent=2, sort_keys=True) + "\n")


def _atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    """Atomic text write (the project's temp file + ``os.replace``); mkstemp creates it 0600 first."""
    atomic_write_bytes(path, text.encode())
    os.chmod(path, mode)


def _start_ticks(pid: int) -> int | None:
    """Kernel start time of ``pid`` (field 22 of /proc/<pid>/stat), None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def is_running(proc: Proc) -> bool:
    """True while the PID is alive and still the process we started."""
    return _start_ticks(proc.pid) == proc.start_ticks


# --------------------------------------------------------------------------------------------
# addresses and client configuration


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _resolve_ports(cfg: StackConfig, state: StackState) -> None:
    """Fix each managed service's port once: configured, else the one used before, else a free one."""
    wanted = {"postgres": cfg.pg_port, "s3": cfg.s3_port, "mlflow": cfg.mlflow_port, "prefect": cfg.prefect_port}
    for name, port in wanted.items():
        if port:
            state.ports[name] = port
        elif name not in state.ports:
            state.ports[name] = free_port(cfg.host)


def pg_url(cfg: StackConfig, state: StackState) -> str:
    """``postgresql://user:pw@host:port`` of the cluster (no database)."""
    if cfg.pg_url:
        return cfg.pg_url
    return f"postgresql://{cfg.pg_user}:{cfg.pg_password}@{cfg.host}:{state.ports['postgres']}"


def s3_endpoint(cfg: StackConfig, state: StackState) -> str:
    return cfg.s3_endpoint or f"http://{cfg.host}:{state.ports['s3']}"


def mlflow_url(cfg: StackConfig, state: StackState) -> str:
    return cfg.mlflow_url or f"http://{cfg.host}:{state.ports['mlflow']}"


def prefect_api_url(cfg: StackConfig, state: StackState) -> str:
    return cfg.prefect_url or f"http://{cfg.host}:{state.ports['prefect']}/api"


def client_env(cfg: StackConfig | None = None, state: StackState | None = None) -> dict[str, str]:
    """Environment a client (flow, task, DVC, benchmark) exports to use the served stack.

    MLflow clients need no S3 credentials (artifacts go through ``--serve-artifacts``); the
    ``AWS_*``/``REPROLAB_S3_*`` entries are for DVC and direct S3 readers.
    """
    cfg = cfg or load_config()
    state = state if state is not None else StackState.load(cfg)
    _resolve_ports(cfg, state)
    return {
        **QUIET_ENV,
        "PREFECT_API_URL": prefect_api_url(cfg, state),
        **({"PREFECT_API_AUTH_STRING": auth} if (auth := prefect_auth(cfg)) else {}),
        "MLFLOW_TRACKING_URI": mlflow_url(cfg, state),
        # NOTE: not REPROLAB_S3_ENDPOINT, which would mark S3 as external for a later `stack-up`.
        "REPROLAB_S3_URL": s3_endpoint(cfg, state),
        "AWS_ENDPOINT_URL_S3": s3_endpoint(cfg, state),
        "REPROLAB_S3_BUCKET": cfg.s3_bucket,
        "REPROLAB_DVC_REMOTE_URL": f"s3://{cfg.s3_bucket}/dvc",
        "AWS_ACCESS_KEY_ID": cfg.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": cfg.s3_secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "REPROLAB_WORK_POOL": cfg.work_pool,
        "REPROLAB_DASK_ADDRESS": cfg.dask_address,
        # Bounded MLflow client retries: a dead server is an error after ~10 s, not minutes.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    }


# --------------------------------------------------------------------------------------------
# process control


def _spawn(cfg: StackConfig, name: str, argv: list[str], env: dict[str, str], *, user: str | None = None,
           cwd: Path | None = None, sig: int = signal.SIGTERM, group: bool = True) -> Proc:
    log_path = cfg.stack_dir / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {name}: {argv[0]} ====\n".encode())
        log.flush()
        popen = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            argv, env=env, cwd=cwd or REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, user=user, close_fds=True,
        )
    ticks = None
    for _ in range(50):
        ticks = _start_ticks(popen.pid)
        if ticks is not None:
            break
        time.sleep(0.01)
    if ticks is None:
        raise StackError(f"{name} exited immediately; see {log_path}")
    proc = Proc(pid=popen.pid, start_ticks=ticks, log=str(log_path), signal=int(sig), group=group)
    # The Popen object is dropped on purpose: the stack outlives this Python process. Reap the
    # child if it dies while we are still alive, so it does not linger as a zombie.
    with _children_lock:
        _children.append(popen)
    return proc


_children: list[subprocess.Popen] = []
_children_lock = threading.Lock()


def _reap() -> None:
    with _children_lock:
        for popen in list(_children):
            if popen.poll() is not None:
                _children.remove(popen)


def stop_proc(name: str, proc: Proc, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop one process by PID (and its group); SIGKILL after ``timeout`` s. False if not ours/gone."""
    if not is_running(proc):
        return False
    send = os.killpg if proc.group else os.kill
    try:
        send(proc.pid, proc.signal)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap()
        if not is_running(proc):
            break
        time.sleep(0.1)
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.group:
        # Children that outlived the leader (same process group) are ours too.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    _reap()
    return True


def _log_tail(proc_or_path: Proc | Path, lines: int = 15) -> str:
    path = Path(proc_or_path.log if isinstance(proc_or_path, Proc) else proc_or_path)
    try:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n    " + "\n    ".join(tail)


# --------------------------------------------------------------------------------------------
# the services


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(QUIET_ENV)
    return env


def _pg_os_user() -> str | None:
    """PostgreSQL refuses to run as root: use the ``postgres`` OS user then (Debian creates it)."""
    return "postgres" if os.geteuid() == 0 else None


def _start_postgres(cfg: StackConfig, state: StackState) -> Proc:
    bindir = postgres_bindir()
    if bindir is None:
        raise StackError("PostgreSQL binaries not found; run `make infra-deps`")
    root = cfg.stack_dir / "postgres"
    data = root / "data"
    user = _pg_os_user()
    root.mkdir(parents=True, exist_ok=True)
    if user:
        import pwd

        pw = pwd.getpwnam(user)
        _check_traversable(root, user)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    if not (data / "PG_VERSION").exists():
        shutil.rmtree(data, ignore_errors=True)
        pwfile = root / "pwfile"
        _atomic_write(pwfile, cfg.pg_password + "\n", mode=0o600)
        if user:
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        try:
            res = subprocess.run(  # noqa: S603
                [str(bindir / "initdb"), "-D", str(data), "-U", cfg.pg_user, "--auth=scram-sha-256",
                 f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8"],
                user=user, capture_output=True, text=True, timeout=120, env=_base_env(),
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if res.returncode != 0:
            raise StackError(f"PostgreSQL initdb failed in {data}:\n{res.stdout}\n{res.stderr}")
    argv = [str(bindir / "postgres"), "-D", str(data), "-p", str(state.ports["postgres"]),
            "-c", f"listen_addresses={cfg.host}", "-c", "unix_socket_directories="]
    # SIGINT = PostgreSQL's "fast" shutdown, sent to the postmaster only (it stops its backends).
    return _spawn(cfg, "postgres", argv, _base_env(), user=user, sig=signal.SIGINT, group=False)


def _check_traversable(path: Path, user: str) -> None:
    import pwd

    uid = pwd.getpwnam(user).pw_uid
    for parent in path.resolve().parents:
        st = parent.stat()
        if st.st_uid != uid and not st.st_mode & 0o001:
            raise StackError(
                f"PostgreSQL runs as OS user {user!r}, which cannot enter {parent} (mode {oct(st.st_mode & 0o777)}); "
                f"put REPROLAB_STACK_DIR somewhere it can reach"
            )


def _create_databases(url: str, timeout: float) -> None:
    import psycopg2

    conn = psycopg2.connect(f"{url}/postgres", connect_timeout=max(1, int(timeout)))
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for db in DATABASES:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{db}"')
    finally:
        conn.close()


def _start_s3(cfg: StackConfig, state: StackState) -> Proc:
    node = shutil.which("node")
    if node is None or not S3RVER_JS.exists():
        raise StackError("s3rver not installed; run `make infra-deps`")
    data = cfg.stack_dir / "s3"
    data.mkdir(parents=True, exist_ok=True)
    argv = [node, str(S3RVER_JS), "-d", str(data), "-a", cfg.host, "-p", str(state.ports["s3"]),
            "--no-vhost-buckets", "--configure-bucket", cfg.s3_bucket]
    # s3rver's ListObjectsV2 continuation tokens use DES, which Node >= 17 (OpenSSL 3) only has in
    # the legacy provider; without it any paginated listing (DVC, MLflow) gets HTTP 500.
    env = {**_base_env(), "NODE_OPTIONS": "--openssl-legacy-provider"}
    return _spawn(cfg, "s3", argv, env)


def _start_mlflow(cfg: StackConfig, state: StackState) -> Proc:
    env = _base_env()
    env.update({
        # Via env, not argv: keeps the password out of `ps`.
        "MLFLOW_BACKEND_STORE_URI": f"{pg_url(cfg, state)}/mlflow",
        "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{cfg.s3_bucket}/mlflow",
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint(cfg, state),
        "AWS_ACCESS_KEY_ID": cfg.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": cfg.s3_secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        # Measured: ~520 MB RSS instead of ~2.6 GB (no job-execution workers).
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    })
    argv = [sys.executable, "-m", "mlflow", "server", "--host", cfg.host, "--port", str(state.ports["mlflow"]),
            "--serve-artifacts", "--workers", "1"]
    return _spawn(cfg, "mlflow", argv, env)


def _prefect_bin() -> str:
    return str(Path(sys.executable).parent / "prefect")


def prefect_auth(cfg: StackConfig) -> str | None:
    """``user:password`` the stack's Prefect server requires (Prefect's basic auth), ``None`` for an
    external server. Generated once, kept 0600 in ``<stack dir>/prefect-auth``."""
    if not cfg.manages_prefect:
        return os.environ.get("PREFECT_API_AUTH_STRING") or None
    path = cfg.stack_dir / "prefect-auth"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        import secrets

        auth = f"reprolab:{secrets.token_urlsafe(24)}"
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, auth + "\n", mode=0o600)
        return auth


def _start_prefect(cfg: StackConfig, state: StackState) -> Proc:
    env = _base_env()
    url = pg_url(cfg, state).replace("postgresql://", "postgresql+asyncpg://", 1)
    env.update({
        "PREFECT_HOME": str(cfg.stack_dir / "prefect"),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"{url}/prefect",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": prefect_api_url(cfg, state),
        "PREFECT_LOGGING_LEVEL": "INFO",
        # credentials required on every API call but /health (the UI asks for them once)
        "PREFECT_SERVER_API_AUTH_STRING": prefect_auth(cfg) or "",
    })
    # flows.server: Prefect's app with CORS limited to its own origin and Origin/Host checks
    argv = [sys.executable, "-m", "flows.server", "--host", cfg.host, "--port", str(state.ports["prefect"]),
            "--no-record"]
    return _spawn(cfg, "prefect", argv, env)


def worker_env(cfg: StackConfig, state: StackState) -> dict[str, str]:
    """The worker's environment; the flow runs it starts inherit it (MLflow, S3, DVC via env only)."""
    env = _base_env()
    env.update(client_env(cfg, state))
    env.update({
        "PREFECT_HOME": str(cfg.stack_dir / "prefect-worker"),
        "PREFECT_WORKER_QUERY_SECONDS": f"{cfg.worker_poll_seconds:g}",
        "PREFECT_WORKER_PREFETCH_SECONDS": f"{cfg.worker_poll_seconds:g}",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
    })
    return env


def _start_worker(cfg: StackConfig, state: StackState) -> Proc:
    ensure_work_pool(cfg, state)
    argv = [_prefect_bin(), "worker", "start", "--pool", cfg.work_pool, "--type", "process",
            "--name", f"{cfg.work_pool}-worker"]
    return _spawn(cfg, "worker", argv, worker_env(cfg, state))


def ensure_work_pool(cfg: StackConfig, state: StackState) -> None:
    """Create the process work pool if the Prefect server does not have it yet (idempotent)."""
    api = prefect_api_url(cfg, state)
    try:
        check_http("Prefect server", f"{api}/work_pools/{cfg.work_pool}", cfg.check_timeout, prefect_auth(cfg))
        return
    except ServiceUnavailable as exc:
        if "HTTP 404" not in str(exc):
            raise
    try:
        post_json("Prefect server", f"{api}/work_pools/", {"name": cfg.work_pool, "type": "process"},
                  cfg.check_timeout, prefect_auth(cfg))
    except ServiceUnavailable as exc:
        if "HTTP 409" not in str(exc):  # created concurrently: fine
            raise


def _worker_online(cfg: StackConfig, state: StackState) -> None:
    api = prefect_api_url(cfg, state)
    workers = post_json("Prefect server", f"{api}/work_pools/{cfg.work_pool}/workers/filter", {},
                        cfg.check_timeout, prefect_auth(cfg))
    if not any(w.get("name") == f"{cfg.work_pool}-worker" for w in workers or []):
        raise ServiceUnavailable(f"Prefect worker for pool {cfg.work_pool!r} has not reported to {api} yet")


def _health(cfg: StackConfig, state: StackState, name: str) -> None:
    """One bounded health probe of ``name``; raises ServiceUnavailable naming it."""
    t = cfg.check_timeout
    if name == "postgres":
        check_postgres(pg_url(cfg, state), t)
    elif name == "s3":
        check_s3(s3_endpoint(cfg, state), cfg.s3_access_key, cfg.s3_secret_key, cfg.s3_bucket, t)
    elif name == "mlflow":
        check_http("MLflow server", f"{mlflow_url(cfg, state)}/health", t)
    elif name == "prefect":
        check_http("Prefect server", f"{prefect_api_url(cfg, state)}/health", t)
    elif name == "worker":
        _worker_online(cfg, state)
    else:
        raise StackConfigError(f"unknown service {name!r} (known: {SERVICES})")


_STARTERS = {"postgres": _start_postgres, "s3": _start_s3, "mlflow": _start_mlflow,
             "prefect": _start_prefect, "worker": _start_worker}


def managed_services(cfg: StackConfig) -> list[str]:
    flags = {"postgres": cfg.manages_postgres, "s3": cfg.manages_s3, "mlflow": cfg.manages_mlflow,
             "prefect": cfg.manages_prefect, "worker": True}
    return [s for s in SERVICES if flags[s]]


def preflight(cfg: StackConfig, state: StackState) -> None:
    """Check every *external* service before anything starts (bounded; raises naming the service)."""
    if not cfg.manages_postgres:
        check_postgres(pg_url(cfg, state), cfg.check_timeout)
    if not cfg.manages_s3:
        check_s3(s3_endpoint(cfg, state), cfg.s3_access_key, cfg.s3_secret_key, cfg.s3_bucket, cfg.check_timeout)
    if not cfg.manages_mlflow:
        check_http("MLflow server", f"{mlflow_url(cfg, state)}/health", cfg.check_timeout)
    if not cfg.manages_prefect:
        check_http("Prefect server", f"{prefect_api_url(cfg, state)}/health", cfg.check_timeout)


def start_service(cfg: StackConfig, state: StackState, name: str) -> None:
    """Start one managed service (no-op if already running) and wait until it is healthy."""
    _start_services(cfg, state, [name])


def _start_services(cfg: StackConfig, state: StackState, names: list[str]) -> None:
    """Spawn ``names`` together, then wait for each to be healthy (they start in parallel)."""
    started = []
    for name in names:
        proc = state.procs.get(name)
        if proc is not None and is_running(proc):
            continue
        state.procs[name] = _STARTERS[name](cfg, state)
        state.save(cfg)
        started.append(name)

    def wait(name: str) -> None:
        proc = state.procs[name]
        wait_until(lambda: _health(cfg, state, name), timeout=cfg.start_timeout, alive=lambda: is_running(proc),
                   what=f"{name} (pid {proc.pid})")

    with ThreadPoolExecutor(max_workers=max(1, len(started))) as pool:
        futures = {name: pool.submit(wait, name) for name in started}
    errors = []
    for name, fut in futures.items():
        exc = fut.exception()
        if exc is not None:
            errors.append(f"{exc}; log {state.procs[name].log}:{_log_tail(state.procs[name])}")
    if errors:
        raise StackError("\n".join(errors))
    if "postgres" in started:
        _create_databases(pg_url(cfg, state), cfg.check_timeout)


def stop_service(cfg: StackConfig, state: StackState, name: str) -> bool:
    """Stop one managed service by its PID; True if it was running."""
    proc = state.procs.pop(name, None)
    stopped = stop_proc(name, proc) if proc else False
    state.save(cfg)
    return stopped


def up(cfg: StackConfig | None = None) -> StackState:
    """Bring the stack up (idempotent: running services are kept). Stops what it started on failure."""
    cfg = cfg or load_config()
    missing = missing_deps(cfg)
    if missing:
        raise StackError("missing: " + "; ".join(missing) + " -- run `make infra-deps`")
    cfg.stack_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0 and cfg.manages_postgres:
        cfg.stack_dir.chmod(cfg.stack_dir.stat().st_mode | 0o711)
    state = StackState.load(cfg)
    _resolve_ports(cfg, state)
    state.save(cfg)
    preflight(cfg, state)
    before = {n for n, p in state.procs.items() if is_running(p)}
    services = managed_services(cfg)
    try:
        for group in (["postgres", "s3"], ["mlflow", "prefect"], ["worker"]):
            names = [s for s in group if s in services]
            if names:
                _start_services(cfg, state, names)
    except (StackError, ServiceUnavailable, OSError) as exc:
        for name in reversed(SERVICES):
            if name not in before and name in state.procs:
                stop_service(cfg, state, name)
        raise StackError(str(exc)) from None
    _atomic_write(cfg.stack_dir / "client.env",
                  "".join(f"export {k}={v}\n" for k, v in client_env(cfg, state).items()), mode=0o600)
    return state


def down(cfg: StackConfig | None = None) -> list[str]:
    """Stop every process of the stack by PID, worker first; returns the names stopped."""
    cfg = cfg or load_config()
    state = StackState.load(cfg)
    stopped: list[str] = []
    # Clients first, then the servers, then their storage; each group stops in parallel.
    for group in (["worker"], ["prefect", "mlflow"], ["s3", "postgres"]):
        names = [n for n in group if n in state.procs]
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            done = dict(zip(names, pool.map(lambda n: stop_proc(n, state.procs[n]), names)))
        stopped += [n for n in names if done[n]]
    # Anything recorded but not ours any more (PID reused / already gone) is forgotten too.
    state.procs.clear()
    state.save(cfg)
    return stopped


def status(cfg: StackConfig | None = None) -> dict[str, dict[str, object]]:
    """Per service: managed?, pid, running?, healthy?, address and the probe's error if any."""
    cfg = cfg or load_config()
    state = StackState.load(cfg)
    _resolve_ports(cfg, state)
    managed = managed_services(cfg)
    out: dict[str, dict[str, object]] = {}
    for name in SERVICES:
        proc = state.procs.get(name)
        row: dict[str, object] = {"managed": name in managed, "pid": proc.pid if proc else None,
                                  "running": bool(proc and is_running(proc)), "log": proc.log if proc else None}
        try:
            _health(cfg, state, name)
            row["healthy"] = True
        except (ServiceUnavailable, OSError) as exc:
            row["healthy"], row["error"] = False, str(exc)
        out[name] = row
    out["postgres"]["address"] = redact(pg_url(cfg, state))
    out["s3"]["address"] = s3_endpoint(cfg, state)
    out["mlflow"]["address"] = mlflow_url(cfg, state)
    out["prefect"]["address"] = prefect_api_url(cfg, state)
    return out


def ui_addresses(cfg: StackConfig, state: StackState) -> dict[str, str]:
    return {
        "Prefect UI": prefect_api_url(cfg, state).removesuffix("/api"),
        "MLflow UI": mlflow_url(cfg, state),
        "S3 endpoint": s3_endpoint(cfg, state),
        "PostgreSQL": redact(pg_url(cfg, state)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="start every managed service, wait until healthy, print UI addresses")
    sub.add_parser("down", help="stop every process of the stack by PID")
    sub.add_parser("status", help="PID, liveness and a health probe per service (exit 1 if any is unhealthy)")
    sub.add_parser("env", help="print `export` lines for clients of the running stack")
    sub.add_parser("check", help="probe every service once (bounded), exit 1 naming the failing ones")
    restart = sub.add_parser("restart", help="stop and start one managed service on the same port")
    restart.add_argument("service", choices=SERVICES)
    args = parser.parse_args(argv)
    try:
        cfg = load_config()
        if args.cmd == "up":
            t0 = time.monotonic()
            state = up(cfg)
            print(f"reprolab stack up in {time.monotonic() - t0:.1f} s (data, logs: {cfg.stack_dir})")
            for label, addr in ui_addresses(cfg, state).items():
                print(f"  {label:12s} {addr}")
            print(f"  client env:  source {cfg.stack_dir / 'client.env'}   (or: make stack-env)")
        elif args.cmd == "down":
            stopped = down(cfg)
            print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        elif args.cmd == "env":
            for key, value in client_env(cfg).items():
                print(f"export {key}={value}")
        elif args.cmd in ("status", "check"):
            rows = status(cfg)
            bad = [n for n, r in rows.items() if not r["healthy"]]
            for name, row in rows.items():
                state_txt = "healthy" if row["healthy"] else f"DOWN: {row.get('error')}"
                pid = f"pid {row['pid']}" if row["pid"] else ("external" if not row["managed"] else "not started")
                print(f"{name:9s} {pid:16s} {state_txt}" + (f"  [{row['address']}]" if "address" in row else ""))
            print(f"logs: {cfg.stack_dir / 'logs'}")
            return 1 if bad else 0
        elif args.cmd == "restart":
            state = StackState.load(cfg)
            _resolve_ports(cfg, state)
            stop_service(cfg, state, args.service)
            start_service(cfg, state, args.service)
            print(f"{args.service} restarted (pid {state.procs[args.service].pid})")
    except (StackError, StackConfigError, ServiceUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
