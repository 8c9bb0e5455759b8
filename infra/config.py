"""Configuration of the served stack: environment variables and named profiles.

Every setting is a ``REPROLAB_*`` environment variable; a profile file
``infra/profiles/<name>.env`` (chosen with ``REPROLAB_PROFILE=<name>``) supplies defaults for
them, and the process environment overrides the profile. Nothing is configured by editing code.

A service is *managed* (started and stopped by ``infra.stack``) unless its external address is
configured: ``REPROLAB_PG_URL`` for PostgreSQL, ``REPROLAB_S3_ENDPOINT`` for the S3 store,
``REPROLAB_MLFLOW_URL`` / ``REPROLAB_PREFECT_URL`` for the two servers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILES_DIR = REPO_ROOT / "infra" / "profiles"

# Telemetry off and loopback only, for every process the stack starts and every client it configures.
QUIET_ENV: dict[str, str] = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "AWS_EC2_METADATA_DISABLED": "true",
}

# key -> (default, help). The only keys a profile may set; anything else is rejected by name.
SETTINGS: dict[str, tuple[str, str]] = {
    "REPROLAB_STACK_DIR": (".reprolab/stack", "data, logs and PID files of the stack (relative to the repo root)"),
    "REPROLAB_HOST": ("127.0.0.1", "address every managed server binds to"),
    "REPROLAB_PG_PORT": ("0", "PostgreSQL port (0 = a free port, chosen at stack-up)"),
    "REPROLAB_PG_USER": ("reprolab", "PostgreSQL role the servers use"),
    "REPROLAB_PG_PASSWORD": ("reprolab", "its password (scram-sha-256 over TCP)"),
    "REPROLAB_PG_URL": ("", "external PostgreSQL, postgresql://user:pw@host:port (then none is managed)"),
    "REPROLAB_S3_PORT": ("0", "s3rver port (0 = free)"),
    "REPROLAB_S3_ENDPOINT": ("", "external S3 endpoint URL (then no s3rver is managed)"),
    "REPROLAB_S3_BUCKET": ("reprolab", "bucket holding MLflow artifacts (mlflow/) and the DVC remote (dvc/)"),
    "REPROLAB_S3_ACCESS_KEY": ("S3RVER", "S3 access key (s3rver accepts S3RVER/S3RVER)"),
    "REPROLAB_S3_SECRET_KEY": ("S3RVER", "S3 secret key"),
    "REPROLAB_MLFLOW_PORT": ("0", "MLflow server port (0 = free)"),
    "REPROLAB_MLFLOW_URL": ("", "external MLflow tracking server (then none is managed)"),
    "REPROLAB_PREFECT_PORT": ("0", "Prefect server port (0 = free)"),
    "REPROLAB_PREFECT_URL": ("", "external Prefect API, http://host:port/api (then none is managed)"),
    "REPROLAB_WORK_POOL": ("reprolab-process", "Prefect process work pool served by the managed worker"),
    "REPROLAB_WORKER_POLL_SECONDS": ("5", "how often the worker polls the pool"),
    "REPROLAB_DASK_ADDRESS": ("", "dask.distributed scheduler (tcp://host:8786); empty = a LocalCluster"),
    "REPROLAB_DASK_WORKERS": ("2", "LocalCluster worker processes when no scheduler is configured"),
    "REPROLAB_START_TIMEOUT": ("90", "seconds a service may take to become healthy"),
    "REPROLAB_CHECK_TIMEOUT": ("5", "seconds one health/preflight probe may take"),
}


class StackConfigError(ValueError):
    """A configuration value or profile is invalid; the message names the key/file."""


def read_profile(name: str, profiles_dir: Path = PROFILES_DIR) -> dict[str, str]:
    """Parse ``<profiles_dir>/<name>.env`` (``KEY=VALUE`` lines, ``#`` comments).

    Raises:
        StackConfigError: unknown profile, malformed line or a key not in ``SETTINGS``.
    """
    path = profiles_dir / f"{name}.env"
    if not path.is_file():
        known = sorted(p.stem for p in profiles_dir.glob("*.env"))
        raise StackConfigError(f"profile {name!r} not found: no file {path} (known profiles: {known})")
    values: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        if not sep:
            raise StackConfigError(f"{path}:{lineno}: expected KEY=VALUE, got {raw!r}")
        if key not in SETTINGS:
            raise StackConfigError(f"{path}:{lineno}: unknown setting {key!r} (known: {sorted(SETTINGS)})")
        values[key] = value.strip().strip('"').strip("'")
    return values


@dataclass(frozen=True)
class StackConfig:
    """Resolved settings (see ``SETTINGS`` for each key's meaning)."""

    stack_dir: Path
    host: str
    pg_port: int
    pg_user: str
    pg_password: str
    pg_url: str
    s3_port: int
    s3_endpoint: str
    s3_bucket: str
    s3_access_key: str
    s3_secret_key: str
    mlflow_port: int
    mlflow_url: str
    prefect_port: int
    prefect_url: str
    work_pool: str
    worker_poll_seconds: float
    dask_address: str
    dask_workers: int
    start_timeout: float
    check_timeout: float

    @property
    def manages_postgres(self) -> bool:
        return not self.pg_url

    @property
    def manages_s3(self) -> bool:
        return not self.s3_endpoint

    @property
    def manages_mlflow(self) -> bool:
        return not self.mlflow_url

    @property
    def manages_prefect(self) -> bool:
        return not self.prefect_url


def _int(key: str, raw: str, minimum: int = 0) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise StackConfigError(f"{key}={raw!r} is not an integer") from None
    if value < minimum or value > 65535:
        raise StackConfigError(f"{key}={raw!r} is out of range [{minimum}, 65535]")
    return value


def _float(key: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise StackConfigError(f"{key}={raw!r} is not a number") from None
    if value <= 0:
        raise StackConfigError(f"{key}={raw!r} must be > 0")
    return value


def load_config(env: Mapping[str, str] | None = None) -> StackConfig:
    """Resolve the stack configuration: defaults < profile (``REPROLAB_PROFILE``) < environment."""
    env = os.environ if env is None else env
    values = {key: default for key, (default, _) in SETTINGS.items()}
    profile = env.get("REPROLAB_PROFILE", "")
    if profile:
        values.update(read_profile(profile))
    values.update({k: v for k, v in env.items() if k in SETTINGS})
    for key in ("REPROLAB_PG_URL", "REPROLAB_S3_ENDPOINT", "REPROLAB_MLFLOW_URL", "REPROLAB_PREFECT_URL"):
        url = values[key]
        if url and "://" not in url:
            raise StackConfigError(f"{key}={url!r} is not a URL (expected scheme://host:port...)")
    stack_dir = Path(values["REPROLAB_STACK_DIR"])
    if not stack_dir.is_absolute():
        stack_dir = REPO_ROOT / stack_dir
    return StackConfig(
        stack_dir=stack_dir,
        host=values["REPROLAB_HOST"],
        pg_port=_int("REPROLAB_PG_PORT", values["REPROLAB_PG_PORT"]),
        pg_user=values["REPROLAB_PG_USER"],
        pg_password=values["REPROLAB_PG_PASSWORD"],
        pg_url=values["REPROLAB_PG_URL"].rstrip("/"),
        s3_port=_int("REPROLAB_S3_PORT", values["REPROLAB_S3_PORT"]),
        s3_endpoint=values["REPROLAB_S3_ENDPOINT"].rstrip("/"),
        s3_bucket=values["REPROLAB_S3_BUCKET"],
        s3_access_key=values["REPROLAB_S3_ACCESS_KEY"],
        s3_secret_key=values["REPROLAB_S3_SECRET_KEY"],
        mlflow_port=_int("REPROLAB_MLFLOW_PORT", values["REPROLAB_MLFLOW_PORT"]),
        mlflow_url=values["REPROLAB_MLFLOW_URL"].rstrip("/"),
        prefect_port=_int("REPROLAB_PREFECT_PORT", values["REPROLAB_PREFECT_PORT"]),
        prefect_url=values["REPROLAB_PREFECT_URL"].rstrip("/"),
        work_pool=values["REPROLAB_WORK_POOL"],
        worker_poll_seconds=_float("REPROLAB_WORKER_POLL_SECONDS", values["REPROLAB_WORKER_POLL_SECONDS"]),
        dask_address=values["REPROLAB_DASK_ADDRESS"],
        dask_workers=_int("REPROLAB_DASK_WORKERS", values["REPROLAB_DASK_WORKERS"], minimum=1),
        start_timeout=_float("REPROLAB_START_TIMEOUT", values["REPROLAB_START_TIMEOUT"]),
        check_timeout=_float("REPROLAB_CHECK_TIMEOUT", values["REPROLAB_CHECK_TIMEOUT"]),
    )
