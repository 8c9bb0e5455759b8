"""MLflow tracking: one parent run per pipeline run, one nested run per stage.

Written once for both orchestrators (Prefect flows and the DVC CLI). Uses an explicit
``MlflowClient`` with run ids (no thread-local "active run"), so it is safe from Prefect's
worker threads. Defaults are embedded: ``sqlite:///<repo>/mlflow.db`` with artifacts under
``<repo>/mlartifacts``; ``MLFLOW_TRACKING_URI`` points it at a server instead.
``REPROLAB_MLFLOW=0`` turns tracking off.

What a run carries:

* lineage tags on every run: git commit and dirty flag, params hash, the content hash of
  every input and output artifact, package versions;
* the parent run (``<paper>-<profile>-<Prefect flow-run name or UTC time>``): the flow-run id
  and name, the overrides (JSON), the headline metrics (each claim's measured value and CI,
  ``claimN.<slug>``) and the verdict counts (``verdicts.reproduced`` ...);
* a stage run: its metrics, learning curves as step metrics (``train/seed0/val_loss`` with
  ``step`` = epoch, from the ``...history.<epoch>.<name>`` entries of its metrics), start and
  end times spanning the stage's own compute time, and for a cached stage
  ``reprolab.computed_by_run``: the run that computed it;
* the process id and host (``reprolab.pid``, ``reprolab.host``): a later run marks runs
  whose process is gone and that were left RUNNING as KILLED with ``reprolab.end_reason``.

A new sqlite store is created atomically (:func:`ensure_store`): built in a temporary file,
then linked into place; a half-migrated store left by older code or another tool is
recovered when it holds no runs and refused with a message naming the file otherwise.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from pydantic import BaseModel

from tasks.platform.errors import ReprolabError
from tasks.platform.params import ROOT, params_hash
from tasks.platform.process import pid_alive, proc_start

PACKAGES = ("torch", "lightning", "prefect", "mlflow", "dvc", "numpy", "pandas", "pyarrow", "pydantic", "triton")
MAX_ARTIFACT_BYTES = 50 * 2**20


def enabled() -> bool:
    return os.environ.get("REPROLAB_MLFLOW", "1") != "0"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{ROOT / 'mlflow.db'}"


def artifact_root() -> Path:
    return Path(os.environ.get("REPROLAB_MLARTIFACTS", ROOT / "mlartifacts"))


@functools.cache
def git_state() -> dict[str, str]:
    """``{"git_commit": sha or "unknown", "git_dirty": "true"|"false"|"unknown"}``."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
        return {"git_commit": sha, "git_dirty": str(bool(dirty)).lower()}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}


@functools.cache
def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def lineage_tags() -> dict[str, str]:
    tags = {f"reprolab.{k}": v for k, v in git_state().items()}
    tags.update({f"reprolab.pkg.{k}": v for k, v in package_versions().items()})
    tags["mlflow.source.git.commit"] = git_state()["git_commit"]
    return tags


def flatten_params(obj: Any, prefix: str = "") -> dict[str, str]:
    """Flatten a params object to ``{"train.model.hidden": "[256, 128]"}`` for MLflow."""
    data = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    out: dict[str, str] = {}
    if isinstance(data, Mapping):
        for k, v in data.items():
            out.update(flatten_params(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = json.dumps(data)[:6000]
    return out


# PLATFORM: the sqlite store, created atomically ----------------------------------------------
EXPERIMENT_KIND = "custom_model_development"  # the MLflow 3 UI then opens the experiment on its runs


class StoreError(ReprolabError):
    """The MLflow store file is unusable; the message names the file and what to do."""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (``None`` for a server or other DB)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):].split("?", 1)[0])


@functools.cache
def schema_head() -> str:
    """The alembic revision a store of this MLflow version must have."""
    # NOTE: private MLflow helper; it is what MLflow's own schema check compares against.
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def _inspect_sqlite(path: Path) -> tuple[str | None, int]:
    """``(alembic revision or None, number of runs)`` of an existing sqlite file."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
            rev = None
            if "alembic_version" in tables:
                row = con.execute("select version_num from alembic_version").fetchone()
                rev = row[0] if row else None
            runs = con.execute("select count(*) from runs").fetchone()[0] if "runs" in tables else 0
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise StoreError(
            f"MLflow store {path} is not a readable SQLite database ({e}). Move it away "
            f"(mv {path} {path}.bad) and rerun to start a new store, or point MLFLOW_TRACKING_URI "
            "at another one."
        ) from e
    return rev, int(runs)


def _create_sqlite_store(path: Path) -> None:
    """Create a complete store at ``path`` unless one appears there first (atomic: temp + link)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.init"):  # left by a killed creator
        pid = stale.name.split(".")[-3]
        if pid.isdigit() and not pid_alive(int(pid)):
            stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.init")
    try:
        store = SqlAlchemyStore(f"sqlite:///{tmp}", artifact_root().resolve().as_uri())
        store.engine.dispose()
        try:
            os.link(tmp, path)  # fails if another process put a complete store there first
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


def _wait_until_quiet(path: Path, quiet: float = 5.0, limit: float = 60.0) -> None:
    """Wait until ``path`` has not changed for ``quiet`` seconds (at most ``limit``)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit and time.time() - path.stat().st_mtime < quiet:
        time.sleep(0.5)


def ensure_store(uri: str | None = None) -> None:
    """Make the sqlite store at ``uri`` usable before MLflow opens it (no-op for other URIs).

    * absent (or an empty file): created atomically, so a kill during MLflow's table
      creation leaves no store rather than a half-migrated one;
    * at this MLflow's schema revision: used as is;
    * at another revision (half-migrated, or from another MLflow version) with no runs:
      moved aside to ``<file>.broken-<time>`` and created anew, with a warning;
    * at another revision holding runs, or not a database: :class:`StoreError` naming the
      file, what was found and what to do.
    """
    path = sqlite_path(uri or tracking_uri())
    if path is None:
        return
    if not path.exists():
        _create_sqlite_store(path)
        return
    head = schema_head()
    if path.stat().st_size and _inspect_sqlite(path)[0] == head:
        return
    _wait_until_quiet(path)  # another tool (e.g. the MLflow UI server) may be creating it right now
    if path.stat().st_size == 0:
        path.unlink(missing_ok=True)  # sqlite's empty placeholder: nothing to lose
        _create_sqlite_store(path)
        return
    rev, runs = _inspect_sqlite(path)
    if rev == head:
        return
    if runs == 0:
        aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%dT%H%M%S')}")
        os.replace(path, aside)
        print(f"warning: MLflow store {path} was half-initialised (schema revision {rev}, expected "
              f"{head}) and held no runs; moved it to {aside.name} and created a new one", file=sys.stderr)
        _create_sqlite_store(path)
        return
    import mlflow

    raise StoreError(
        f"MLflow store {path} is at schema revision {rev or 'none'} but MLflow {mlflow.__version__} "
        f"needs {head}, and it holds {runs} run(s): it was interrupted while being created or "
        "upgraded, or written by another MLflow version. Back it up, then run "
        f"`mlflow db upgrade sqlite:///{path}`; if that fails, move it away (its runs stay readable "
        "with the MLflow that wrote it) and rerun to start a new store."
    )


# PLATFORM: processes (tasks.platform.process), Prefect context, metric shapes ------------------
def process_tags() -> dict[str, str]:
    """Who owns a run while it is RUNNING: pid, its start time and the host."""
    return {"reprolab.pid": str(os.getpid()), "reprolab.pid_start": proc_start(os.getpid()),
            "reprolab.host": socket.gethostname()}


def prefect_flow_run() -> dict[str, str]:
    """``{"id", "name"}`` of the Prefect flow run this code runs in; ``{}`` outside one."""
    if "prefect" not in sys.modules:  # the DVC CLI never imports Prefect
        return {}
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return {}
    return {"id": str(ctx.flow_run.id), "name": str(ctx.flow_run.name)}


_HISTORY = re.compile(r"^(?P<pre>(?:.+\.)?)history\.(?P<step>\d+)\.(?P<name>[^.]+)$")


def split_curves(metrics: Mapping[str, float]) -> tuple[dict[str, float], list[tuple[str, float, int]]]:
    """Split flat stage metrics into scalars and learning curves.

    ``seeds.0.history.3.val_loss`` (epoch 3 of seed 0) becomes the point ``("train/seed0/val_loss",
    value, 3)``: one key per seed and quantity with ``step`` = epoch, so MLflow draws a curve.
    The ``epoch`` entries themselves are the steps and are dropped.
    """
    scalars: dict[str, float] = {}
    curves: list[tuple[str, float, int]] = []
    for key, value in metrics.items():
        m = _HISTORY.match(key)
        if m is None:
            scalars[key] = value
            continue
        if m["name"] == "epoch":
            continue
        parts = [p for p in m["pre"].split(".") if p]
        tokens: list[str] = []
        for i, p in enumerate(parts):
            if p == "seeds" and i + 1 < len(parts):
                continue
            tokens.append(f"seed{p}" if i and parts[i - 1] == "seeds" else p)
        curves.append(("/".join(["train", *tokens, m["name"]]), value, int(m["step"])))
    return scalars, curves


def _slug(text: str, words: int = 6) -> str:
    """``"Our check (not a claim...): KD recovery leaks less"`` -> ``kd_recovery_leaks_less``."""
    text = re.sub(r"^[^:]*\([^)]*\)\s*:", "", text)  # a "(not a claim of the paper):" preamble
    return "_".join(re.findall(r"[a-z0-9]+", text.lower())[:words]) or "claim"


def headline_metrics(claims: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """Metrics and tags of a parent run from a report's ``claims.json`` (:func:`tasks.platform.report.claims_json`).

    Metrics: ``claimN.<slug>`` = the measured value (with ``.ci_lo``/``.ci_hi``) of every claim
    that has one, and ``verdicts.<verdict>`` = how many claims got each verdict. Tags:
    ``reprolab.verdict.claimN`` = the verdict, so the runs table shows both.
    """
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    for i, c in enumerate(claims.get("claims", []), start=1):
        key = f"claim{i}.{_slug(c['claim'])}"
        tags[f"reprolab.verdict.claim{i}"] = str(c["verdict"])
        for suffix, field in (("", "value"), (".ci_lo", "lo"), (".ci_hi", "hi")):
            v = c.get(field)
            if isinstance(v, (int, float)) and v == v and abs(v) != float("inf"):
                metrics[key + suffix] = float(v)
    for verdict, n in claims.get("counts", {}).items():
        metrics[f"verdicts.{_slug(verdict.replace('at this scale', ''), 3)}"] = float(n)
    return metrics, tags


_ACTIVE: set["Tracker"] = set()
_ACTIVE_LOCK = threading.Lock()


def finish_active(status: str = "KILLED", reason: str = "") -> list[str]:
    """End every unfinished tracker of this process (for signal handlers); return their run ids."""
    with _ACTIVE_LOCK:
        trackers = list(_ACTIVE)
    ids = [t.parent_id for t in trackers if t.parent_id]
    for t in trackers:
        t.finish(status, reason)
    return [i for i in ids if i]


class Tracker:
    """Parent/child MLflow runs of one pipeline run of ``paper`` (no-op when disabled)."""

    def __init__(self, paper: str, profile: str, orchestrator: str):
        self.paper, self.profile, self.orchestrator = paper, profile, orchestrator
        self.on = enabled()
        self.parent_id: str | None = None
        self._open: set[str] = set()  # nested runs created but not yet terminated
        self._lock = threading.Lock()
        if not self.on:
            return
        import mlflow
        from mlflow.tracking import MlflowClient

        ensure_store()
        mlflow.set_tracking_uri(tracking_uri())
        self.client = MlflowClient(tracking_uri())
        name = f"reprolab/{paper}"
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            location = None
            if tracking_uri().startswith(("sqlite:", "file:")):
                location = (artifact_root() / paper).resolve().as_uri()
            try:
                self.experiment_id = self.client.create_experiment(
                    name, artifact_location=location, tags={"mlflow.experimentKind": EXPERIMENT_KIND})
            except Exception:  # noqa: BLE001 - another process created it first; use theirs
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
                self.experiment_id = exp.experiment_id
        else:
            self.experiment_id = exp.experiment_id
        if exp is not None and exp.tags.get("mlflow.experimentKind") != EXPERIMENT_KIND:
            self.client.set_experiment_tag(self.experiment_id, "mlflow.experimentKind", EXPERIMENT_KIND)

    def _base_tags(self) -> dict[str, str]:
        return {**lineage_tags(), **process_tags(), "reprolab.paper": self.paper,
                "reprolab.profile": self.profile, "reprolab.orchestrator": self.orchestrator}

    def start(self, params: BaseModel, run_name: str | None = None,
              overrides: Mapping[str, Any] | None = None) -> str | None:
        """Open the parent run; first mark this project's runs left RUNNING by dead processes."""
        if not self.on:
            return None
        prefect = prefect_flow_run()
        tags = {
            **self._base_tags(),
            "reprolab.params_hash": params_hash(params),
            "reprolab.overrides": json.dumps(dict(overrides or {}), sort_keys=True)[:4000],
        }
        if prefect:
            tags.update({"reprolab.prefect.flow_run_id": prefect["id"],
                         "reprolab.prefect.flow_run_name": prefect["name"]})
        suffix = prefect.get("name") or time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        name = run_name or f"{self.paper}-{self.profile}{'+overrides' if overrides else ''}-{suffix}"
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.parent_id = run.info.run_id
        with _ACTIVE_LOCK:
            _ACTIVE.add(self)
        self._log_params(self.parent_id, flatten_params(params))
        close_stale_runs(self.client, found_by=self.parent_id)
        return self.parent_id

    def _log_params(self, run_id: str, flat: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in flat.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def _log_metrics(self, run_id: str, points: Iterable[tuple[str, float, int]], ts: int) -> None:
        from mlflow.entities import Metric

        metrics = [Metric(k[:250], float(v), ts, step) for k, v, step in points]
        for i in range(0, len(metrics), 500):
            self.client.log_batch(run_id, metrics=metrics[i : i + 500])

    def computing_run(self, stage_key: str) -> str | None:
        """The id of the latest run that computed (not reused) the stage with ``stage_key``."""
        runs = self.client.search_runs(
            [self.experiment_id],
            f"tags.`reprolab.stage_key` = '{stage_key}' and tags.`reprolab.cached` = 'false'",
            order_by=["attributes.start_time DESC"], max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def log_stage(self, result, params_section: Any, cached: bool) -> str | None:
        """A nested run for one stage result (``tasks.platform.stage.StageResult``).

        A computed stage's run spans its compute time (``result.seconds``) and logs its
        outputs; a cached one lasts as long as its look-up, records the original compute time
        (``compute_seconds``, from the store manifest) and links the run that computed it.
        """
        if not self.on:
            return None
        tags = {
            **self._base_tags(),
            "mlflow.parentRunId": self.parent_id or "",
            "reprolab.stage": result.stage,
            "reprolab.stage_key": result.key,
            "reprolab.params_hash": result.params_hash,
            "reprolab.cached": str(cached).lower(),
            **{f"reprolab.input.{k}.sha256": v["sha256"] for k, v in result.inputs.items()},
            **{f"reprolab.output.{k}.sha256": v["sha256"] for k, v in result.outputs.items()},
        }
        scalars, curves = split_curves(result.metrics)
        compute_seconds = None
        if cached:
            origin = self.computing_run(result.key)
            compute_seconds = _manifest_seconds(result)
            if origin:
                tags["reprolab.computed_by_run"] = origin
                tags["mlflow.note.content"] = (
                    f"Reused from the store: computed by run [{origin}](#/experiments/"
                    f"{self.experiment_id}/runs/{origin}) (same `reprolab.stage_key`).")
            else:
                tags["mlflow.note.content"] = ("Reused from the store: the run that computed it is not "
                                               "in this MLflow store.")
        tags = {k: v for k, v in tags.items() if v}
        end = int(time.time() * 1000)
        # the run spans the stage's own compute time, not the time spent logging it
        start = end - (0 if cached else int(1000 * float(result.seconds)))
        run = self.client.create_run(self.experiment_id, start_time=start, run_name=result.stage, tags=tags)
        rid = run.info.run_id
        with self._lock:
            self._open.add(rid)
        if params_section is not None:
            self._log_params(rid, flatten_params(params_section))
        points = [(k, v, 0) for k, v in scalars.items()] + curves
        points.append(("stage_seconds", float(result.seconds), 0))
        if compute_seconds is not None:
            points.append(("compute_seconds", compute_seconds, 0))
        self._log_metrics(rid, points, end)
        for out in result.outputs.values():
            path = Path(out["path"])
            # NOTE: a cached stage's files were logged by the run that computed them
            # (reprolab.computed_by_run); logging them again would only copy identical bytes.
            if not cached and path.stat().st_size <= MAX_ARTIFACT_BYTES:
                self.client.log_artifact(rid, str(path), artifact_path="outputs")
        self.client.set_terminated(rid, "FINISHED", end_time=end)
        with self._lock:
            self._open.discard(rid)
        return rid

    def log_headline(self, claims: Mapping[str, Any], extra: Mapping[str, float] | None = None) -> int:
        """Log a report's headline metrics and verdicts on the parent run; return how many metrics."""
        if not (self.on and self.parent_id):
            return 0
        metrics, tags = headline_metrics(claims)
        metrics.update(extra or {})
        self._log_metrics(self.parent_id, [(k, v, 0) for k, v in metrics.items()], int(time.time() * 1000))
        self.set_parent_tags(tags)
        return len(metrics)

    def log_parent_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self.on and self.parent_id:
            self.client.log_artifact(self.parent_id, str(path), artifact_path=artifact_path)

    def set_parent_tags(self, tags: Mapping[str, str]) -> None:
        if self.on and self.parent_id:
            for k, v in tags.items():
                self.client.set_tag(self.parent_id, k, v)

    def finish(self, status: str = "FINISHED", reason: str = "") -> None:
        """End the parent run (and any nested run still open) with ``status``; idempotent.

        ``status`` is an MLflow run status: FINISHED, FAILED or KILLED (an interrupt);
        ``reason`` goes to the ``reprolab.end_reason`` tag.
        """
        with _ACTIVE_LOCK:
            if self not in _ACTIVE:
                return
            _ACTIVE.discard(self)
        with self._lock:
            open_runs, self._open = list(self._open), set()
        for rid in [*open_runs, self.parent_id]:
            if reason:
                self.client.set_tag(rid, "reprolab.end_reason", reason)
            self.client.set_terminated(rid, status)


def _manifest_seconds(result) -> float | None:
    """The compute time a store manifest recorded for ``result`` (``None`` outside the store)."""
    from tasks.platform.stage import MANIFEST

    if not result.outputs:
        return None
    manifest = Path(next(iter(result.outputs.values()))["path"]).parent / MANIFEST
    try:
        return float(json.loads(manifest.read_text())["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def close_stale_runs(client, found_by: str = "") -> list[str]:
    """Mark this project's RUNNING runs whose process on this host is gone as KILLED.

    A run records ``reprolab.pid``/``pid_start``/``host`` when it starts; one still RUNNING
    whose process no longer exists was killed (``kill -9``, a crash, a power cut). Runs of
    live processes, of other hosts and without those tags are left alone. Returns the ids marked.
    """
    exps = client.search_experiments(filter_string="name LIKE 'reprolab/%'")
    if not exps:
        return []
    host = socket.gethostname()
    runs = client.search_runs(
        [e.experiment_id for e in exps],
        f"attributes.status = 'RUNNING' and tags.`reprolab.host` = '{host}'", max_results=5000,
    )
    marked = []
    for run in runs:
        pid = run.data.tags.get("reprolab.pid", "")
        if not pid.isdigit() or pid_alive(int(pid), run.data.tags.get("reprolab.pid_start", "")):
            continue
        reason = (f"process {pid} on {host} ended without closing this run (killed or crashed); "
                  f"marked KILLED at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}"
                  + (f" by run {found_by}" if found_by else ""))
        client.set_tag(run.info.run_id, "reprolab.end_reason", reason)
        client.set_terminated(run.info.run_id, "KILLED")
        marked.append(run.info.run_id)
    return marked
