import json

import pyarrow as pa
import pytest
import torch

from tasks.platform import artifacts
from tasks.platform.errors import ArtifactError


def test_round_trip_each_format(tmp_path):
    table = pa.table({"a": pa.array([1, 2], pa.int64())})
    sd = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    artifacts.write(tmp_path / "t.parquet", table)
    artifacts.write(tmp_path / "w.safetensors", sd)
    artifacts.write(tmp_path / "m.json", {"b": 1.5, "a": [1, 2]})
    artifacts.write(tmp_path / "r.md", "# hi\n")
    assert artifacts.read(tmp_path / "t.parquet").equals(table)
    assert torch.equal(artifacts.read(tmp_path / "w.safetensors")["w"], sd["w"])
    assert artifacts.read(tmp_path / "m.json") == {"a": [1, 2], "b": 1.5}
    assert artifacts.read(tmp_path / "r.md") == "# hi\n"


def test_json_is_canonical_and_rejects_nan(tmp_path):
    assert artifacts.to_json_bytes({"b": 1, "a": 2}) == artifacts.to_json_bytes({"a": 2, "b": 1})
    with pytest.raises(ArtifactError, match="bad.json"):
        artifacts.write(tmp_path / "bad.json", {"x": float("nan")})
    assert not (tmp_path / "bad.json").exists()
    assert list(tmp_path.iterdir()) == []  # no temp file left behind


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "x.txt"
    artifacts.write(path, "old")
    with pytest.raises(RuntimeError):
        with artifacts.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


def test_missing_and_corrupted_files_name_the_file(tmp_path):
    with pytest.raises(ArtifactError, match="missing artifact: .*nope.parquet"):
        artifacts.read(tmp_path / "nope.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(ArtifactError, match="corrupted artifact .*bad.parquet"):
        artifacts.read(bad)


def test_schema_mismatch_names_column_and_file(tmp_path):
    path = tmp_path / "t.parquet"
    artifacts.write(path, pa.table({"id": pa.array([1], pa.int32())}))
    schema = pa.schema([("id", pa.int64()), ("label", pa.int64())])
    with pytest.raises(ArtifactError) as e:
        artifacts.read(path, schema)
    msg = str(e.value)
    assert "t.parquet" in msg and "'id' has type int32" in msg and "missing column 'label'" in msg


def test_unsupported_extension(tmp_path):
    with pytest.raises(ArtifactError, match=r"\.pkl"):
        artifacts.write(tmp_path / "x.pkl", {"a": 1})


def test_flat_metrics_keeps_finite_numbers_only():
    flat = artifacts.flat_metrics({"a": {"b": 1, "c": [2.5, float("inf")]}, "s": "x", "t": True})
    assert flat == {"a.b": 1.0, "a.c.0": 2.5}
    json.dumps(flat)


def test_written_files_follow_the_umask_not_mkstemps_0600(tmp_path, monkeypatch):
    import os
    import stat

    monkeypatch.delenv("REPROLAB_UMASK", raising=False)
    old = os.umask(0o022)
    try:
        artifacts.write(tmp_path / "a" / "m.json", {"x": 1})
        artifacts.atomic_write_bytes(tmp_path / "b.png", b"\x89PNG")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "m.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "b.png").stat().st_mode) == 0o644
    monkeypatch.setenv("REPROLAB_UMASK", "077")
    artifacts.write(tmp_path / "private.md", "secret")
    assert stat.S_IMODE((tmp_path / "private.md").stat().st_mode) == 0o600
    monkeypatch.setenv("REPROLAB_UMASK", "rw-r--r--")
    with pytest.raises(ArtifactError, match="REPROLAB_UMASK"):
        artifacts.write(tmp_path / "x.md", "x")
    assert not (tmp_path / "x.md").exists()
