"""MLflow tracking: one parent run per pipeline run, one nested run per stage.

Written once for both orchestrators (Prefect flows and the DVC CLI). Uses an explicit
``MlflowClient`` with run ids (no thread-local "active run"), so it is safe from Prefect's
worker threads. Defaults are embedded: ``sqlite:///<repo>/mlflow.db`` with artifacts under
``<repo>/mlartifacts``; ``MLFLOW_TRACKING_URI`` points it at a server instead.
``REPROLAB_MLFLOW=0`` turns tracking off.

Lineage tags on every run: git commit and dirty flag, params hash, the content hash of
every input artifact, package versions.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel

from tasks.platform.params import ROOT, params_hash

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


class Tracker:
    """Parent/child MLflow runs of one pipeline run of ``paper`` (no-op when disabled)."""

    def __init__(self, paper: str, profile: str, orchestrator: str):
        self.paper, self.profile, self.orchestrator = paper, profile, orchestrator
        self.on = enabled()
        self.parent_id: str | None = None
        if not self.on:
            return
        import mlflow
        from mlflow.tracking import MlflowClient

        mlflow.set_tracking_uri(tracking_uri())
        self.client = MlflowClient(tracking_uri())
        name = f"reprolab/{paper}"
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            location = None
            if tracking_uri().startswith(("sqlite:", "file:")):
                location = (artifact_root() / paper).resolve().as_uri()
            self.experiment_id = self.client.create_experiment(name, artifact_location=location)
        else:
            self.experiment_id = exp.experiment_id

    def start(self, params: BaseModel, run_name: str | None = None) -> str | None:
        if not self.on:
            return None
        tags = {
            **lineage_tags(),
            "reprolab.paper": self.paper,
            "reprolab.profile": self.profile,
            "reprolab.orchestrator": self.orchestrator,
            "reprolab.params_hash": params_hash(params),
        }
        run = self.client.create_run(self.experiment_id, run_name=run_name or f"{self.paper}-{self.profile}", tags=tags)
        self.parent_id = run.info.run_id
        self._log_params(self.parent_id, flatten_params(params))
        return self.parent_id

    def _log_params(self, run_id: str, flat: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in flat.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_stage(self, result, params_section: Any, cached: bool) -> str | None:
        """A nested run for one stage result (``tasks.platform.stage.StageResult``)."""
        if not self.on:
            return None
        from mlflow.entities import Metric
        import time

        tags = {
            **lineage_tags(),
            "mlflow.parentRunId": self.parent_id or "",
            "reprolab.paper": self.paper,
            "reprolab.stage": result.stage,
            "reprolab.profile": self.profile,
            "reprolab.orchestrator": self.orchestrator,
            "reprolab.stage_key": result.key,
            "reprolab.params_hash": result.params_hash,
            "reprolab.cached": str(cached).lower(),
            **{f"reprolab.input.{k}.sha256": v["sha256"] for k, v in result.inputs.items()},
            **{f"reprolab.output.{k}.sha256": v["sha256"] for k, v in result.outputs.items()},
        }
        tags = {k: v for k, v in tags.items() if v}
        run = self.client.create_run(self.experiment_id, run_name=result.stage, tags=tags)
        rid = run.info.run_id
        if params_section is not None:
            self._log_params(rid, flatten_params(params_section))
        now = int(time.time() * 1000)
        metrics = [Metric(k[:250], v, now, 0) for k, v in result.metrics.items()]
        metrics.append(Metric("stage_seconds", float(result.seconds), now, 0))
        for i in range(0, len(metrics), 500):
            self.client.log_batch(rid, metrics=metrics[i : i + 500])
        for out in result.outputs.values():
            path = Path(out["path"])
            # NOTE: a cached stage's files were logged by the run that computed them (same
            # sha256 tags); logging them again would only copy identical bytes.
            if not cached and path.stat().st_size <= MAX_ARTIFACT_BYTES:
                self.client.log_artifact(rid, str(path), artifact_path="outputs")
        self.client.set_terminated(rid, "FINISHED")
        return rid

    def log_parent_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self.on and self.parent_id:
            self.client.log_artifact(self.parent_id, str(path), artifact_path=artifact_path)

    def set_parent_tags(self, tags: Mapping[str, str]) -> None:
        if self.on and self.parent_id:
            for k, v in tags.items():
                self.client.set_tag(self.parent_id, k, v)

    def finish(self, status: str = "FINISHED") -> None:
        if self.on and self.parent_id:
            self.client.set_terminated(self.parent_id, status)
