"""Stage and paper declarations, the paper registry, and the one generic stage shell.

A :class:`Stage` names its compute core, its params sections, its named inputs
(``"<stage>.<output>"`` of the same paper) and its outputs (file names whose extension
fixes the format, see :mod:`tasks.platform.artifacts`). A :class:`Paper` is an ordered tuple of
stages plus the pydantic model of its ``params.yaml`` section.

:func:`run_stage` is the only code that turns a core into files. Prefect (``flows/run.py``),
the DVC CLI (``python -m tasks run``) and integration tests all call it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Callable, Mapping

import pyarrow as pa
from pydantic import BaseModel

from tasks.platform import artifacts
from tasks.platform.errors import ArtifactError, ReprolabError
from tasks.platform.params import ROOT, get_path, params_hash
from tasks.platform.process import pid_alive

Schema = pa.Schema | Callable[[pa.Table, str], None]
# The shared layers every stage's code hash and dvc.yaml deps cover; a paper's own modules
# (PAPER_DIRS/<paper>.py or PAPER_DIRS/<paper>/) are added per paper (see code_paths).
SHARED_CODE = ("tasks", "models", "kernels")
PAPER_DIRS = ("tasks/papers", "flows/papers")


@dataclass(frozen=True)
class Stage:
    """One step of a paper pipeline (pipeline as data, after kedro's ``Node``).

    Attributes:
        name: verb, unique within the paper (``train``, ``prune_digits``).
        func: the compute core ``func(params, **inputs) -> {output: object}``.
        params: dotted paths of the params sections the core receives (one: the object;
            several: ``{path: object}``; none: ``None``).
        inputs: core keyword argument -> ``"<stage>.<output>"``.
        outputs: output name -> file name (``weights.safetensors``).
        schemas: output name -> ``pa.Schema`` or ``check(table, where)``; checked on write
            and whenever a later stage reads the table.
        version: bump to invalidate caches when behaviour changes outside the hashed code.
        shared: the result does not depend on which paper asks for it (a core from the shared layers,
            e.g. the tinylm every quantization paper trains): it is keyed without the paper's name and
            module and stored once under ``store/_shared/<core>/``, so papers that declare it with the
            same params and input bytes compute it once (see :func:`stage_key`).
    """

    name: str
    func: Callable[..., Mapping[str, Any]]
    params: tuple[str, ...] = ()
    inputs: Mapping[str, str] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)
    schemas: Mapping[str, Schema] = field(default_factory=dict)
    version: str = "1"
    shared: bool = False

    @property
    def core(self) -> str:
        """``module.qualname`` of the compute core (the shared store's folder name)."""
        return f"{self.func.__module__}.{self.func.__qualname__}"

    def input_refs(self) -> dict[str, tuple[str, str]]:
        return {arg: tuple(ref.split(".", 1)) for arg, ref in self.inputs.items()}  # type: ignore[misc]

    def params_for(self, params: BaseModel) -> Any:
        if not self.params:
            return None
        if len(self.params) == 1:
            return get_path(params, self.params[0])
        return {p: get_path(params, p) for p in self.params}

    def params_digest(self, params: BaseModel) -> str:
        """Hash of the stage's params sections, without the fields marked as execution-only
        (:data:`EXECUTION_ONLY`: how many processes run it, never what it computes)."""
        sections = {p: get_path(params, p) for p in self.params}
        return params_hash({p: _result_dump(v) for p, v in sections.items()})


# ``Field(..., json_schema_extra=EXECUTION_ONLY)`` marks a param that changes how a stage runs but not its
# result (e.g. the number of worker processes): it is left out of the cache key, so changing it reuses results.
EXECUTION_ONLY = {"execution_only": True}


def _result_dump(v: Any) -> Any:
    if not isinstance(v, BaseModel):
        return v
    data = v.model_dump(mode="json")
    for name, info in type(v).model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get("execution_only"):
            data.pop(name, None)
        elif isinstance(getattr(v, name), BaseModel):
            data[name] = _result_dump(getattr(v, name))
    return data


@dataclass(frozen=True)
class Paper:
    """A paper pipeline: its name, seed citation, params model and ordered stages.

    Attributes:
        name: registry name and ``params.yaml`` section (``nm_sparsity``).
        title: the seed paper's title.
        arxiv: arXiv id of the seed paper ("" if none).
        params_model: pydantic model of the paper's params section.
        stages: stages in a valid execution order.
        module: source file of the paper's declaration, ``flows/papers/<name>.py`` (part of
            every stage's code hash, with ``tasks/papers/<name>.py``: see :func:`code_paths`).
        claims: one line per claim from the abstract (the report verdicts refer to them).
    """

    name: str
    title: str
    arxiv: str
    params_model: type[BaseModel]
    stages: tuple[Stage, ...]
    module: str = ""
    claims: tuple[str, ...] = ()

    def __post_init__(self):
        seen: dict[str, Stage] = {}
        for st in self.stages:
            if st.name in seen:
                raise ValueError(f"paper {self.name!r}: duplicate stage name {st.name!r}")
            for arg, (src, out) in st.input_refs().items():
                if src not in seen or out not in seen[src].outputs:
                    raise ValueError(
                        f"paper {self.name!r}, stage {st.name!r}: input {arg!r} refers to "
                        f"{src}.{out}, which no earlier stage outputs"
                    )
            for p in st.params:
                if p.split(".")[0] not in self.params_model.model_fields:
                    raise ValueError(f"paper {self.name!r}, stage {st.name!r}: unknown params section {p!r}")
            if st.shared and st.func.__module__.startswith(tuple(d.replace("/", ".") for d in PAPER_DIRS)):
                raise ValueError(f"paper {self.name!r}, stage {st.name!r}: a shared stage's core must live in the "
                                 f"shared layers, not in a paper module ({st.core})")
            for name in st.outputs.values():
                if Path(name).suffix not in artifacts.EXTS:
                    raise ValueError(f"paper {self.name!r}, stage {st.name!r}: unsupported output {name!r}")
            seen[st.name] = st

    def stage(self, name: str) -> Stage:
        for st in self.stages:
            if st.name == name:
                return st
        raise ReprolabError(f"paper {self.name!r} has no stage {name!r}; stages: {[s.name for s in self.stages]}")

    def downstream(self, name: str) -> list[str]:
        """Names of the stages that (transitively) consume ``name``'s outputs, in order."""
        hit = {name}
        for st in self.stages:
            if any(src in hit for src, _ in st.input_refs().values()):
                hit.add(st.name)
        return [s.name for s in self.stages if s.name in hit and s.name != name]


_PAPERS: dict[str, Paper] = {}


def register_paper(paper: Paper) -> Paper:
    """Register ``paper`` by name; a duplicate name raises (never a silent overwrite)."""
    if paper.name in _PAPERS and _PAPERS[paper.name] is not paper:
        raise ValueError(f"paper {paper.name!r} is already registered (by {_PAPERS[paper.name].module})")
    _PAPERS[paper.name] = paper
    return paper


def registered_papers() -> dict[str, Paper]:
    return dict(_PAPERS)


# ----------------------------------------------------------------------------------------
# PLATFORM: hashing, the content-addressed store, and the stage shell
# ----------------------------------------------------------------------------------------


def _shared_entries(root: Path) -> list[Path]:
    """The shared layers: ``SHARED_CODE`` without the per-paper folders, as top-level entries
    (``tasks/train.py``, ``tasks/evaluation``, ..., ``tasks/papers/__init__.py``, ``models``)."""
    own = {root / d for d in PAPER_DIRS}
    out: list[Path] = []
    for d in SHARED_CODE:
        top = root / d
        if not any(o.is_relative_to(top) for o in own):
            out.append(top)
            continue
        for child in sorted(top.iterdir()):
            if child.name == "__pycache__" or (child.is_file() and child.suffix != ".py"):
                continue
            if child in own:
                out += [p for p in [child / "__init__.py"] if p.exists()]
            elif not any(o.is_relative_to(child) for o in own):
                out.append(child)
    return out


def code_paths(paper: Paper, root: Path = ROOT) -> list[Path]:
    """The source a paper's stages depend on: the shared layers plus that paper's own modules.

    Shared: ``tasks/`` (except ``tasks/papers/``), ``models/``, ``kernels/``. Own:
    ``tasks/papers/<paper>.py`` (or a ``tasks/papers/<paper>/`` package) and the declaration
    ``paper.module`` (``flows/papers/<paper>.py``). The layer rule (``tests/test_layers.py``)
    makes this safe: no shared module imports a paper module, and no paper imports another, so
    editing one paper's module changes only that paper's stage keys and ``dvc.yaml`` deps.
    """
    own = [root / d / f"{paper.name}{ext}" for d in PAPER_DIRS for ext in (".py", "")]
    paths = [*_shared_entries(root), *(p for p in own if p.exists())]
    if paper.module:
        paths.append(Path(paper.module).resolve())
    return list(dict.fromkeys(paths))


def shared_code_digest() -> str:
    """:func:`code_digest` of the shared layers only (no paper module): the code of a result
    shared by papers, e.g. a cached tuning trial (:class:`tasks.platform.tuning.TrialStore`)."""
    return code_digest(tuple(_shared_entries(ROOT)))


def _py_files(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        files += [p] if p.is_file() else sorted(f for f in p.rglob("*.py") if "__pycache__" not in f.parts)
    return sorted(set(files))


@cache
def code_digest(paths: tuple[Path, ...]) -> str:
    """SHA-256 over the source files under ``paths`` (files, or folders searched for ``*.py``).

    NOTE: Prefect's ``TASK_SOURCE`` hashes only the task's own lines, not the helpers it
    calls; hashing the layers catches a change anywhere in the compute path.
    """
    h = hashlib.sha256()
    for p in _py_files(paths):
        h.update(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def input_digests(input_paths: Mapping[str, str | Path]) -> dict[str, str]:
    return {arg: artifacts.sha256_file(p) for arg, p in sorted(input_paths.items())}


def stage_key(paper: Paper, stage: Stage, params: BaseModel, input_paths: Mapping[str, str | Path]) -> str:
    """The cache key: input file bytes + the stage's params + code + stage version.

    A shared stage (``Stage.shared``) is keyed by its core instead of the paper and stage names, and
    by the shared layers' code only (:func:`shared_code_digest`): two papers that declare it with the
    same params sections and the same input bytes get the same key, hence one stored result.
    """
    payload = {
        "version": stage.version,
        "params": stage.params_digest(params),
        "inputs": input_digests(input_paths),
    }
    if stage.shared:
        payload |= {"core": stage.core, "code": shared_code_digest()}
    else:
        payload |= {"paper": paper.name, "stage": stage.name, "code": code_digest(tuple(code_paths(paper)))}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def store_root() -> Path:
    return Path(os.environ.get("REPROLAB_HOME", ROOT / ".reprolab")) / "store"


SHARED_STORE = "_shared"


def store_dir(paper: Paper, stage: Stage, key: str) -> Path:
    """``store/<paper>/<stage>/<key>``; a shared stage's result: ``store/_shared/<core>/<key>``."""
    if stage.shared:
        return store_root() / SHARED_STORE / stage.core / key[:24]
    return store_root() / paper.name / stage.name / key[:24]


def find_store_dir(paper: str, stage: str, key: str) -> Path:
    """:func:`store_dir` from names (an MLflow run's tags): the registered paper's stage decides whether the
    result is in the shared store; an unknown paper or stage is looked up under its own name."""
    p = _PAPERS.get(paper)
    st = next((s for s in p.stages if s.name == stage), None) if p else None
    return store_dir(p, st, key) if st is not None else store_root() / paper / stage / key[:24]


MANIFEST = "manifest.json"


@dataclass
class StageResult:
    """What a stage produced: output paths + content hashes, its metrics and provenance."""

    paper: str
    stage: str
    key: str
    outputs: dict[str, dict[str, str]]  # name -> {"path", "sha256"}
    inputs: dict[str, dict[str, str]]  # arg -> {"path", "sha256"}
    params_hash: str
    metrics: dict[str, float]
    seconds: float
    reused: bool = False

    def path(self, output: str) -> Path:
        return Path(self.outputs[output]["path"])

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "StageResult":
        return cls(**d)


def _check_table(check: Schema, table: pa.Table, where: str) -> None:
    if isinstance(check, pa.Schema):
        artifacts.check_schema(table, check, where)
    else:
        check(table, where)


def _load_inputs(paper: Paper, stage: Stage, input_paths: Mapping[str, str | Path]) -> dict[str, Any]:
    missing = set(stage.inputs) - set(input_paths)
    if missing:
        raise ArtifactError(f"stage {stage.name!r}: no path given for input(s) {sorted(missing)}")
    loaded = {}
    for arg, (src, out) in stage.input_refs().items():
        path = Path(input_paths[arg])
        obj = artifacts.read(path)
        check = paper.stage(src).schemas.get(out)
        if check is not None:
            _check_table(check, obj, str(path))
        loaded[arg] = obj
    return loaded


def _verify_manifest(d: Path) -> dict[str, Any] | None:
    """The manifest of a complete store dir whose files still hash right, else ``None``."""
    mf = d / MANIFEST
    if not mf.is_file():
        return None
    try:
        manifest = json.loads(mf.read_text())
        for out in manifest["outputs"].values():
            if artifacts.sha256_file(d / Path(out["path"]).name) != out["sha256"]:
                return None
    except (ValueError, KeyError, ArtifactError):
        return None
    return manifest


def _non_finite_report(input_paths: Mapping[str, str | Path], inputs: Mapping[str, Any]) -> list[str]:
    """``<file>: column 'acc' has 1 non-finite value(s) (first: row 0 = nan)`` per bad column."""
    lines = []
    for arg, obj in inputs.items():
        if isinstance(obj, pa.Table):
            for col, row, count, value in artifacts.non_finite_cells(obj):
                lines.append(f"{input_paths[arg]}: column {col!r} has {count} non-finite value(s) "
                             f"(first: row {row} = {value})")
    return lines


def compute_checked(
    paper: Paper, stage: Stage, params: BaseModel, input_paths: Mapping[str, str | Path]
) -> dict[str, Any]:
    """Load the inputs and :func:`compute`; when the core fails on an input table holding NaN
    or inf, raise :class:`ArtifactError` naming each such file and column.

    NOTE: non-finite cells are not rejected on read: some tables hold NaN on purpose (a CI
    over one seed). They are named only when the core fails on them.
    """
    inputs = _load_inputs(paper, stage, input_paths)
    try:
        return compute(paper, stage, params, inputs)
    except ReprolabError:
        raise
    except Exception as e:  # noqa: BLE001 - re-raised (chained) either way
        bad = _non_finite_report(input_paths, inputs)
        if bad:
            raise ArtifactError(
                f"stage {stage.name!r} failed on non-finite input values ({type(e).__name__}: {e}):\n  "
                + "\n  ".join(bad)
            ) from e
        raise


def compute(paper: Paper, stage: Stage, params: BaseModel, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Call the core and check it returned exactly the declared outputs (valid tables)."""
    result = stage.func(stage.params_for(params), **inputs)
    if not isinstance(result, Mapping) or set(result) != set(stage.outputs):
        got = sorted(result) if isinstance(result, Mapping) else type(result).__name__
        raise ReprolabError(f"stage {stage.name!r} returned {got}, declared {sorted(stage.outputs)}")
    for name, check in stage.schemas.items():
        _check_table(check, result[name], f"{stage.name}.{name}")
    return dict(result)


def _metrics_of(stage: Stage, produced: Mapping[str, Any]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for name, fname in stage.outputs.items():
        if fname.endswith(".json") and name.startswith("metrics"):
            metrics.update(artifacts.flat_metrics(produced[name]))
    return metrics


def write_outputs(
    stage: Stage, produced: Mapping[str, Any], out_dir: Path, overwrite: bool = False
) -> dict[str, dict[str, str]]:
    """Write every output atomically into ``out_dir``.

    Refuses (``ArtifactError``) to replace an existing file with different bytes unless
    ``overwrite``: nothing already produced is silently changed.
    """
    encoded = {name: artifacts.encode(out_dir / fname, produced[name]) for name, fname in stage.outputs.items()}
    return _write_encoded(stage, encoded, out_dir, overwrite)


def _write_encoded(stage: Stage, encoded: Mapping[str, bytes], out_dir: Path, overwrite: bool) -> dict[str, dict[str, str]]:
    for name, fname in stage.outputs.items():
        path = out_dir / fname
        if path.exists() and not overwrite and artifacts.sha256_file(path) != artifacts.sha256_bytes(encoded[name]):
            raise ArtifactError(
                f"refusing to overwrite {path} with different content (stage {stage.name!r}); "
                "move it away or pass --force"
            )
    out = {}
    for name, fname in stage.outputs.items():
        artifacts.atomic_write_bytes(out_dir / fname, encoded[name])
        out[name] = {"path": str(out_dir / fname), "sha256": artifacts.sha256_bytes(encoded[name])}
    return out


def run_stage(
    paper: Paper,
    stage: Stage,
    params: BaseModel,
    input_paths: Mapping[str, str | Path],
    out_dir: str | Path | None = None,
    overwrite: bool = False,
) -> StageResult:
    """Run one stage: load inputs, call the core, write outputs atomically.

    With ``out_dir=None`` outputs go to the content-addressed store
    (``store_dir(paper, stage, key)``): a complete, intact store dir is reused without
    recomputing; otherwise the stage writes into a private staging dir that is renamed
    into place only when every output and the manifest are written, so a killed run
    never leaves a half-written result behind. With an explicit ``out_dir`` (the DVC
    path) outputs are written there, refusing to change existing files unless ``overwrite``.
    """
    t0 = time.perf_counter()
    key = stage_key(paper, stage, params, input_paths)
    inputs_meta = {
        arg: {"path": str(p), "sha256": artifacts.sha256_file(p)} for arg, p in sorted(input_paths.items())
    }
    phash = stage.params_digest(params)

    if out_dir is not None and stage.shared:
        # A shared result is computed once per machine whichever entry point asks (Prefect or DVC):
        # through the store, then copied out under the same no-silent-overwrite rule.
        stored = run_stage(paper, stage, params, input_paths)
        produced_bytes = {n: Path(o["path"]).read_bytes() for n, o in stored.outputs.items()}
        outs = _write_encoded(stage, produced_bytes, Path(out_dir), overwrite)
        return dataclasses.replace(stored, outputs=outs, seconds=time.perf_counter() - t0)
    if out_dir is not None:
        produced = compute_checked(paper, stage, params, input_paths)
        outs = write_outputs(stage, produced, Path(out_dir), overwrite=overwrite)
        return StageResult(
            paper.name, stage.name, key, outs, inputs_meta, phash, _metrics_of(stage, produced),
            time.perf_counter() - t0,
        )

    final = store_dir(paper, stage, key)
    res = _reuse(final, t0, paper, stage, inputs_meta)
    if res is not None:
        return res
    # One process computes a key at a time: a second run of the same stage waits here, then
    # reuses what the first wrote (so an intact result is never moved aside as "damaged").
    with _key_lock(final):
        res = _reuse(final, t0, paper, stage, inputs_meta)
        if res is not None:
            return res
        _remove_stale_staging(final)
        produced = compute_checked(paper, stage, params, input_paths)
        staging = final.parent / f".{final.name}.{os.getpid()}.{time.monotonic_ns()}.partial"
        try:
            outs = write_outputs(stage, produced, staging)
            # Paths in the manifest point at the final location.
            outs = {n: {"path": str(final / Path(o["path"]).name), "sha256": o["sha256"]} for n, o in outs.items()}
            res = StageResult(
                paper.name, stage.name, key, outs, inputs_meta, phash, _metrics_of(stage, produced),
                time.perf_counter() - t0,
            )
            artifacts.write(staging / MANIFEST, res.to_json())
            if final.exists():
                if _verify_manifest(final) is not None:  # intact (a writer without the lock): keep it
                    return _reuse(final, t0, paper, stage, inputs_meta) or res
                # damaged (truncated, edited, half-deleted): keep it aside rather than delete it
                final.rename(final.parent / f".{final.name}.damaged.{time.time_ns()}")
            os.replace(staging, final)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return res


def _reuse(final: Path, t0: float, paper: Paper, stage: Stage, inputs_meta: dict) -> StageResult | None:
    """The result stored in ``final`` if it is complete and intact, else ``None``. A shared result
    computed for another paper is reported as this paper's stage, with this run's input paths."""
    manifest = _verify_manifest(final)
    if manifest is None:
        return None
    res = StageResult.from_json(manifest)
    res.paper, res.stage, res.inputs = paper.name, stage.name, inputs_meta
    res.reused, res.seconds = True, time.perf_counter() - t0
    return res


@contextlib.contextmanager
def _key_lock(final: Path):
    """An exclusive ``fcntl`` lock on ``.<key>.lock`` next to ``final`` (released on exit or
    when the process dies). The lock file stays: removing it would race with a waiter."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(final.parent / f".{final.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _remove_stale_staging(final: Path) -> None:
    """Delete staging dirs of ``final`` left by a killed process (never a live one's)."""
    if not final.parent.is_dir():
        return
    for d in final.parent.glob(f".{final.name}.*.partial"):
        pid = int(d.name.split(".")[2])
        if not pid_alive(pid):
            shutil.rmtree(d, ignore_errors=True)


def resolve_inputs(stage: Stage, results: Mapping[str, StageResult]) -> dict[str, str]:
    """Input paths of ``stage`` from the results of earlier stages."""
    out = {}
    for arg, (src, name) in stage.input_refs().items():
        if src not in results:
            raise ArtifactError(f"stage {stage.name!r} needs {src}.{name}, but {src!r} has not run")
        out[arg] = results[src].outputs[name]["path"]
    return out


def dvc_path(paper: Paper, stage: Stage, output: str) -> Path:
    """Where the DVC pipeline keeps ``stage``'s ``output`` (relative to the repo root)."""
    return Path("artifacts") / paper.name / stage.name / stage.outputs[output]
