"""Test isolation: every test session gets its own store, reports, MLflow DB and Prefect home.

Set before any project module is imported (flows.run reads REPROLAB_HOME at import).
"""

import os
import tempfile
from pathlib import Path

_SESSION = Path(tempfile.mkdtemp(prefix="reprolab-test-"))
os.environ["REPROLAB_HOME"] = str(_SESSION / "home")
os.environ["REPROLAB_REPORTS"] = str(_SESSION / "reports")
os.environ["REPROLAB_MLARTIFACTS"] = str(_SESSION / "mlartifacts")
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_SESSION / 'mlflow.db'}"
os.environ["PREFECT_HOME"] = str(_SESSION / "prefect")
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(_SESSION / "home" / "prefect-results")
for k, v in {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
             "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1",
             "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}.items():
    os.environ.setdefault(k, v)
(_SESSION / "prefect").mkdir(parents=True, exist_ok=True)

import torch  # noqa: E402

if not torch.cuda.is_available():
    # NOTE: the Triton CPU interpreter must be chosen before the first triton import, and any
    # test module may import it first (through kernels.nm): so here, before all of them.
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION
