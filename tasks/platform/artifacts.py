"""Typed, atomic reading and writing of file artifacts.

The in-memory type of an artifact is fixed by its file extension:

==================  ==========================================  ==============
extension           in memory                                   on disk
==================  ==========================================  ==============
``.parquet``        ``pyarrow.Table`` (schema-checked)          parquet
``.safetensors``    ``dict[str, torch.Tensor]``                 safetensors
``.json``           JSON-able ``dict`` / ``list``               JSON
``.png``            ``matplotlib.figure.Figure`` / ``bytes``    PNG
``.md .html .txt``  ``str``                                     UTF-8 text
==================  ==========================================  ==============

Every write goes to a temporary file in the destination directory and is moved into
place with ``os.replace``, so a reader never sees a half-written file and a crash
leaves at most a stray ``.tmp`` file. No pickle anywhere.

File modes follow the umask like a plain ``open()`` would (``0644`` under the usual ``022``):
``tempfile.mkstemp`` creates ``0600`` files, so :func:`atomic_path` sets the mode before the
rename. ``REPROLAB_UMASK`` (octal, e.g. ``077``) overrides the process umask for these files.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.platform.errors import ArtifactError

TEXT_EXTS = {".md", ".html", ".txt"}
EXTS = {".parquet", ".safetensors", ".json", ".png", *TEXT_EXTS}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes; ``ArtifactError`` if it does not exist."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"missing artifact: {path}")
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _process_umask() -> int:
    """The process umask, read without changing it (``/proc``), else by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    # NOTE: os.umask can only be read by setting it; the window is a few instructions.
    old = os.umask(0o022)
    os.umask(old)
    return old


def file_mode() -> int:
    """Mode of a file written here: ``0o666`` minus ``REPROLAB_UMASK`` (octal) or the process umask."""
    raw = os.environ.get("REPROLAB_UMASK", "").strip()
    if raw:
        try:
            mask = int(raw, 8)
        except ValueError:
            raise ArtifactError(f"REPROLAB_UMASK={raw!r} is not an octal umask such as 022 or 077") from None
        if not 0 <= mask <= 0o777:
            raise ArtifactError(f"REPROLAB_UMASK={raw!r} is outside 000..777")
    else:
        mask = _process_umask()
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success move it onto ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)  # mkstemp creates 0600; readers (lab mates, a web server) need the umask's mode
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _json_default(o: Any):
    if hasattr(o, "item"):  # numpy / torch scalars
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def to_json_bytes(obj: Any) -> bytes:
    """Canonical JSON (sorted keys, no NaN) so equal content gives equal bytes."""
    text = json.dumps(obj, sort_keys=True, indent=2, default=_json_default, allow_nan=False)
    return (text + "\n").encode()


def encode(path: str | Path, obj: Any) -> bytes:
    """Serialise ``obj`` into the bytes of an artifact with ``path``'s extension."""
    path = Path(path)
    ext = path.suffix
    if ext == ".parquet":
        if not isinstance(obj, pa.Table):
            raise ArtifactError(f"{path}: expected a pyarrow.Table, got {type(obj).__name__}")
        buf = io.BytesIO()
        pq.write_table(obj, buf)
        return buf.getvalue()
    if ext == ".safetensors":
        from safetensors.torch import save

        if not isinstance(obj, dict):
            raise ArtifactError(f"{path}: expected dict[str, Tensor], got {type(obj).__name__}")
        return save({k: v.detach().contiguous().cpu() for k, v in obj.items()})
    if ext == ".json":
        try:
            return to_json_bytes(obj)
        except (TypeError, ValueError) as e:
            raise ArtifactError(f"{path}: cannot write JSON: {e}") from e
    if ext == ".png":
        if isinstance(obj, bytes):
            return obj
        buf = io.BytesIO()
        # NOTE: fixed metadata so equal figures give equal bytes (matplotlib stamps a version).
        obj.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
        import matplotlib.pyplot as plt

        plt.close(obj)
        return buf.getvalue()
    if ext in TEXT_EXTS:
        if not isinstance(obj, str):
            raise ArtifactError(f"{path}: expected str, got {type(obj).__name__}")
        return obj.encode()
    raise ArtifactError(f"{path}: unsupported artifact extension {ext!r}; use one of {sorted(EXTS)}")


def write(path: str | Path, obj: Any) -> str:
    """Atomically write ``obj`` to ``path``; return the SHA-256 of the bytes written."""
    data = encode(path, obj)
    atomic_write_bytes(path, data)
    return sha256_bytes(data)


def read(path: str | Path, schema: pa.Schema | None = None) -> Any:
    """Read an artifact; raise ``ArtifactError`` naming the file if missing/corrupt/mismatched."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"missing artifact: {path}")
    ext = path.suffix
    try:
        if ext == ".parquet":
            table = pq.read_table(path)
        elif ext == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        elif ext == ".json":
            return json.loads(path.read_text())
        elif ext == ".png":
            return path.read_bytes()
        elif ext in TEXT_EXTS:
            return path.read_text()
        else:
            raise ArtifactError(f"{path}: unsupported artifact extension {ext!r}")
    except ArtifactError:
        raise
    except Exception as e:  # noqa: BLE001 - re-raised with the file name; never swallowed
        raise ArtifactError(f"corrupted artifact {path}: {type(e).__name__}: {e}") from e
    if schema is not None:
        check_schema(table, schema, path)
    return table


def check_schema(table: pa.Table, schema: pa.Schema, where: str | Path) -> None:
    """Raise ``ArtifactError`` naming each missing/mistyped column of ``table`` at ``where``."""
    problems = []
    for field in schema:
        if field.name not in table.schema.names:
            problems.append(f"missing column {field.name!r} ({field.type})")
        elif not table.schema.field(field.name).type.equals(field.type):
            problems.append(
                f"column {field.name!r} has type {table.schema.field(field.name).type}, expected {field.type}"
            )
    extra = set(table.schema.names) - set(schema.names)
    if extra:
        problems.append(f"unexpected columns {sorted(extra)}")
    if problems:
        raise ArtifactError(f"schema mismatch in {where}: " + "; ".join(problems))


def non_finite_cells(table: pa.Table) -> list[tuple[str, int, int, Any]]:
    """``(column, first row, count, first value)`` of every float column (or list-of-float
    column) of ``table`` holding NaN or +-inf. Nulls are not counted."""
    import pyarrow.compute as pc

    out = []
    for name in table.schema.names:
        col = table.column(name).combine_chunks()
        typ, rows = col.type, None
        if pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
            if not pa.types.is_floating(typ.value_type):
                continue
            rows = pc.list_parent_indices(col)
            col = pc.list_flatten(col)
        elif not pa.types.is_floating(typ):
            continue
        bad = pc.invert(pc.fill_null(pc.is_finite(col), True))
        count = pc.sum(bad).as_py() or 0
        if count:
            first = pc.index(bad, True).as_py()
            value = col[first].as_py()
            out.append((name, rows[first].as_py() if rows is not None else first, count, value))
    return out


def flat_metrics(obj: Any, prefix: str = "") -> dict[str, float]:
    """Flatten nested dict/list metrics to ``{"a.b.0": number}`` keeping finite numbers only."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flat_metrics(v, f"{prefix}{k}."))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(flat_metrics(v, f"{prefix}{i}."))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        if math.isfinite(obj):
            out[prefix[:-1]] = float(obj)
    return out
