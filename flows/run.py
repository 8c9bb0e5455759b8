"""Prefect over the stage shell: one flow per paper, one cached task per stage, MLflow runs.

* Each stage runs as a Prefect task wrapping :func:`tasks.stage.run_stage` (the same
  function the DVC CLI calls). Its cache key is :func:`tasks.stage.stage_key`: the bytes of
  its input files, its params sections, the source of ``tasks/``, ``models/``, ``kernels/``
  and the paper module. NOTE: Prefect 3's default policy includes the run id, hashes a Path
  argument as a string and ignores callees' source, so we build the key ourselves. The key
  is only offered while the stage's store directory is intact, so a deleted or damaged
  output is recomputed rather than served from a stale cache record.
* Results persist as JSON (no pickle) under ``$REPROLAB_HOME/prefect-results``.
* Only transient failures retry (:func:`tasks.errors.is_transient`: timeouts, lost connections,
  busy resources); bad input and deterministic errors (``ValueError``, ...) fail at once.
* MLflow: one parent run per flow run, one nested run per stage (cached stages too, tagged).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from tasks.params import ROOT

HOME = Path(os.environ.get("REPROLAB_HOME", ROOT / ".reprolab"))
os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(HOME / "prefect-results"))
for _k, _v in {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1",
               # NOTE: the ephemeral API server needs > 20 s (the default) on a loaded 2-core box.
               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}.items():
    os.environ.setdefault(_k, _v)

from prefect import flow, get_run_logger, task  # noqa: E402

from tasks import artifacts, tracking  # noqa: E402
from tasks.errors import is_transient  # noqa: E402
from tasks.params import load_all  # noqa: E402
from tasks.report import publish, write_index  # noqa: E402
from tasks.stage import (  # noqa: E402
    Paper,
    StageResult,
    _verify_manifest,
    resolve_inputs,
    run_stage,
    stage_key,
    store_dir,
)

NIGHTLY_CRON = "0 2 * * *"


def reports_root() -> Path:
    return Path(os.environ.get("REPROLAB_REPORTS", ROOT / "reports"))


def _stage_args(parameters: dict[str, Any]):
    from flows.papers import get_paper

    paper = get_paper(parameters["paper"])
    stage = paper.stage(parameters["stage"])
    params = paper.params_model.model_validate(parameters["params"])
    return paper, stage, params


def cache_key(context, parameters: dict[str, Any]) -> str | None:
    """Prefect cache key of a stage task; ``None`` (no caching) while its outputs are not intact."""
    paper, stage, params = _stage_args(parameters)
    key = stage_key(paper, stage, params, parameters["inputs"])
    if _verify_manifest(store_dir(paper, stage, key)) is None:
        return None
    return f"{paper.name}-{stage.name}-{key}"


def _retry_transient(task, task_run, state) -> bool:
    """Prefect retry condition: retry only a transient failure (:func:`tasks.errors.is_transient`:
    a timeout, a lost connection, a busy resource, a :class:`~tasks.errors.TransientError`).
    Bad input and deterministic errors (``ValueError``, ``RuntimeError``, ...) fail at once."""
    try:
        state.result()
    except BaseException as e:  # noqa: BLE001 - classified, never swallowed (Prefect re-raises)
        return is_transient(e)
    return False


@task(
    cache_key_fn=cache_key,
    persist_result=True,
    result_serializer="json",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=_retry_transient,
)
def stage_task(paper: str, stage: str, params: dict[str, Any], inputs: dict[str, str]) -> dict[str, Any]:
    """Run one stage through the shared stage shell; return its :class:`StageResult` as JSON."""
    p, st, prm = _stage_args({"paper": paper, "stage": stage, "params": params})
    result = run_stage(p, st, prm, inputs)
    get_run_logger().info(
        "%s/%s %s in %.2fs", paper, stage, "reused from the store" if result.reused else "computed", result.seconds
    )
    return result.to_json()


def publish_report(paper: Paper, results: dict[str, StageResult], lineage: dict[str, str]) -> Path | None:
    """Publish the paper's ``report`` stage output to ``reports/<paper>/`` with a lineage section,
    and rebuild ``reports/index.md``/``.html`` (:func:`tasks.report.publish`, :func:`write_index`).

    The report in the store stays a pure function of the stage inputs (so it caches); the
    published copy adds what ran: commit, params hash, stage keys, input hashes, MLflow run.
    The published directory is the "latest" view; every version stays in the store and MLflow.
    """
    from flows.papers import discover

    rep = results.get("report")
    if rep is None or "report" not in rep.outputs:
        return None
    stages = [{"stage": name, "key": r.key, "reused": r.reused, "seconds": r.seconds,
               "outputs": {k: v["sha256"] for k, v in r.outputs.items()}} for name, r in results.items()]
    path = publish(rep.path("report").parent, reports_root() / paper.name, paper.name, lineage, stages)
    write_index(reports_root(), discover())
    return path


def run_pipeline(paper: Paper, profile: str = "full", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate params (every paper), then run ``paper``'s stages in order as Prefect tasks."""
    from flows.papers import discover

    t0 = time.perf_counter()
    all_params = load_all(
        {n: p.params_model for n, p in discover().items()}, profile,
        overrides={paper.name: overrides} if overrides else None,
    )
    params = all_params[paper.name]
    params_json = params.model_dump(mode="json")
    tracker = tracking.Tracker(paper.name, profile, "prefect")
    parent = tracker.start(params)
    results: dict[str, StageResult] = {}
    summary: dict[str, Any] = {"paper": paper.name, "profile": profile, "mlflow_run_id": parent, "stages": {}}
    try:
        for st in paper.stages:
            inputs = resolve_inputs(st, results)
            state = stage_task.with_options(name=f"{paper.name}.{st.name}")(
                paper.name, st.name, params_json, inputs, return_state=True
            )
            res = StageResult.from_json(state.result())
            cached = state.name == "Cached"
            results[st.name] = res
            tracker.log_stage(res, st.params_for(params), cached=cached or res.reused)
            summary["stages"][st.name] = {
                "key": res.key, "cached": cached, "reused": res.reused, "seconds": round(res.seconds, 3),
            }
        lineage = {
            **tracking.git_state(),
            "profile": profile,
            "params_hash": params_hash_of(params),
            "mlflow_tracking_uri": tracking.tracking_uri() if tracker.on else "disabled",
            "mlflow_parent_run": parent or "disabled",
            # data lineage: content hashes of what the source stages (no inputs) produced
            **{f"data {st.name}.{k} sha256": v["sha256"] for st in paper.stages if not st.inputs
               for k, v in results[st.name].outputs.items()},
        }
        report = publish_report(paper, results, lineage)
        if report is not None:
            summary["report"] = str(report)
            tracker.log_parent_artifact(report, "report")
            tracker.log_parent_artifact(report.with_suffix(".html"), "report")
            for png in report.parent.glob("*.png"):
                tracker.log_parent_artifact(png, "report")
            tracker.set_parent_tags({"reprolab.report": str(report)})
        summary["seconds"] = round(time.perf_counter() - t0, 2)
        tracker.finish("FINISHED")
    except BaseException:
        tracker.finish("FAILED")
        raise
    return summary


def params_hash_of(params) -> str:
    from tasks.params import params_hash

    return params_hash(params)


_FLOWS: dict[str, Any] = {}


def build_flow(paper: Paper):
    """The Prefect flow of ``paper`` (built once per process).

    Parameters (editable in the Prefect UI): ``profile`` ("smoke" or "full") and
    ``overrides``, a partial params section merged over ``params.yaml`` for this run only
    (e.g. ``{"prune": {"patterns": ["2:4"]}}``), validated like the file.
    """
    if paper.name in _FLOWS:
        return _FLOWS[paper.name]

    def pipeline(profile: Literal["smoke", "full"] = "full", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        return run_pipeline(paper, profile, overrides)

    pipeline.__doc__ = f"Reproduce {paper.title} (arXiv:{paper.arxiv}) end to end."
    f = flow(name=paper.name, description=pipeline.__doc__, log_prints=True, validate_parameters=True)(pipeline)
    _FLOWS[paper.name] = f
    return f


def build_deployments(papers: list[Paper], cron: str = NIGHTLY_CRON, timezone: str = "UTC", profile: str = "full"):
    """One deployment per paper flow, scheduled nightly (retraining), parameters editable."""
    from prefect.schedules import Cron

    return [
        build_flow(p).to_deployment(
            name=f"{p.name}-nightly",
            schedule=Cron(cron, timezone=timezone),
            parameters={"profile": profile, "overrides": {}},
            description=f"Nightly re-run of {p.name}; edit profile/overrides and trigger from the UI.",
            tags=["reprolab", p.name],
        )
        for p in papers
    ]


def clear_store(paper: Paper) -> None:
    """Delete a paper's store (forces recomputation of every stage)."""
    from tasks.stage import store_root

    shutil.rmtree(store_root() / paper.name, ignore_errors=True)
