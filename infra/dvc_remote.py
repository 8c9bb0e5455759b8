"""Point a DVC repository at the stack's S3 store (``dvc remote add -d --local``).

The remote lives in ``.dvc/config.local`` (never committed), so the same repository uses the
local cache on a laptop and the lab's S3 store on the lab machine, by configuration only.

CLI: ``python -m infra.dvc_remote [REPO_DIR]`` (defaults to the repository root).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from infra.config import QUIET_ENV, REPO_ROOT, load_config
from infra.stack import StackState, client_env

REMOTE_NAME = "reprolab-s3"


def dvc_bin() -> str:
    return str(Path(sys.executable).parent / "dvc")


def dvc(repo: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run ``dvc <args>`` in ``repo``; raises ``RuntimeError`` with dvc's output on failure."""
    full_env = {**os.environ, **QUIET_ENV, **(env or {})}
    res = subprocess.run([dvc_bin(), *args], cwd=repo, env=full_env, capture_output=True, text=True,  # noqa: S603
                         timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"`dvc {' '.join(args)}` failed in {repo} (exit {res.returncode}):\n{res.stdout}{res.stderr}")
    return res.stdout


def configure_remote(repo: Path, env: dict[str, str], *, prefix: str = "dvc", name: str = REMOTE_NAME) -> str:
    """Add/overwrite the default remote ``name`` = ``s3://<bucket>/<prefix>`` on the stack's endpoint.

    Args:
        repo: a DVC repository (``dvc init`` done).
        env: the stack's client environment (``infra.stack.client_env``).
        prefix: key prefix inside the bucket (tests use a unique one).

    Returns:
        The remote URL.
    """
    url = f"s3://{env['REPROLAB_S3_BUCKET']}/{prefix.strip('/')}"
    dvc(repo, "remote", "add", "--local", "--force", "-d", name, url)
    for key, value in (("endpointurl", env["REPROLAB_S3_URL"]),
                       ("access_key_id", env["AWS_ACCESS_KEY_ID"]),
                       ("secret_access_key", env["AWS_SECRET_ACCESS_KEY"]),
                       ("region", env.get("AWS_DEFAULT_REGION", "us-east-1"))):
        dvc(repo, "remote", "modify", "--local", name, key, value)
    dvc(repo, "config", "--local", "core.check_update", "false")
    return url


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    repo = Path(argv[0]).resolve() if argv else REPO_ROOT
    cfg = load_config()
    url = configure_remote(repo, client_env(cfg, StackState.load(cfg)))
    print(f"DVC default remote {REMOTE_NAME} -> {url} (in {repo / '.dvc' / 'config.local'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
