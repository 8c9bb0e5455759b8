"""DVC S3 remote on the stack's store: push, delete cache and outputs, restart S3, pull."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from pathlib import Path

import boto3
import numpy as np
import pytest

from infra.dvc_remote import configure_remote, dvc
from infra.stack import start_service, stop_service
from tests.infra.infra_helpers import Stack

pytestmark = pytest.mark.infra


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_dvc_push_pull_round_trip_survives_s3_restart(stack: Stack, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    data = repo / "data"
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    # A "dataset" (many small files) and a "weights" blob (one larger binary file).
    for i in range(20):
        (data / f"shard_{i:02d}.bin").write_bytes(rng.bytes(int(rng.integers(1, 4096))))
    (repo / "weights.bin").write_bytes(rng.bytes(3 * 1024 * 1024))
    before = {"data": _digests(data), "weights": hashlib.sha256((repo / "weights.bin").read_bytes()).hexdigest()}

    dvc(repo, "init", "--no-scm")
    prefix = f"dvc-test-{uuid.uuid4().hex[:8]}"
    url = configure_remote(repo, stack.env, prefix=prefix)
    assert url == f"s3://{stack.cfg.s3_bucket}/{prefix}"
    assert "endpointurl" in (repo / ".dvc" / "config.local").read_text()
    assert "endpointurl" not in (repo / ".dvc" / "config").read_text()  # nothing host-specific is committed
    dvc(repo, "add", "data", "weights.bin")
    pushed = dvc(repo, "push")
    assert "pushed" in pushed

    # Objects are on the S3 server's disk (file-backed), not only in memory.
    on_disk = list((stack.cfg.stack_dir / "s3" / stack.cfg.s3_bucket).rglob("*"))
    assert any(prefix in str(p) for p in on_disk)
    # Paginated listings work (s3rver's continuation tokens need Node's legacy OpenSSL provider).
    s3 = boto3.client("s3", endpoint_url=stack.env["REPROLAB_S3_URL"], region_name="us-east-1")
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=stack.cfg.s3_bucket, Prefix=prefix,
                                                              PaginationConfig={"PageSize": 5}))
    assert len(pages) > 1
    assert sum(p["KeyCount"] for p in pages) == 21 + 1  # 20 shards + weights + the directory manifest

    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(data)
    (repo / "weights.bin").unlink()

    stop_service(stack.cfg, stack.state, "s3")
    start_service(stack.cfg, stack.state, "s3")

    dvc(repo, "pull")
    after = {"data": _digests(data), "weights": hashlib.sha256((repo / "weights.bin").read_bytes()).hexdigest()}
    assert after == before
