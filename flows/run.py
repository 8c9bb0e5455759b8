"""Prefect over the stage shell: one flow per paper, one cached task per stage, MLflow runs.

* Each stage runs as a Prefect task wrapping :func:`tasks.platform.stage.run_stage` (the same
  function the DVC CLI calls). Its cache key is :func:`tasks.platform.stage.stage_key`: the bytes of
  its input files, its params sections, the source of ``tasks/``, ``models/``, ``kernels/``
  and the paper module. NOTE: Prefect 3's default policy includes the run id, hashes a Path
  argument as a string and ignores callees' source, so we build the key ourselves. The key
  is only offered while the stage's store directory is intact, so a deleted or damaged
  output is recomputed rather than served from a stale cache record.
* Results persist as JSON (no pickle) under ``$REPROLAB_HOME/prefect-results``.
* Only transient failures retry (:func:`tasks.platform.errors.is_transient`: timeouts, lost
  connections, busy resources); bad input and deterministic errors (``ValueError``, ...) fail at once.
* MLflow: one parent run per flow run (headline metrics, verdict counts, Prefect flow-run id,
  overrides), one nested run per stage (cached stages too, linked to the run that computed them).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from flows import interrupt, local
from tasks.platform.params import ROOT

local.configure()  # the project's own PREFECT_HOME, before Prefect is imported
HOME = Path(os.environ.get("REPROLAB_HOME", ROOT / ".reprolab"))
os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(HOME / "prefect-results"))
for _k, _v in {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1",
               # NOTE: the ephemeral API server needs > 20 s (the default) on a loaded 2-core box.
               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}.items():
    os.environ.setdefault(_k, _v)

from prefect import flow, get_run_logger, task  # noqa: E402

from tasks.platform import artifacts, progress, tracking  # noqa: E402
from tasks.platform.errors import is_transient  # noqa: E402
from tasks.platform.params import load_all  # noqa: E402
from tasks.platform.report import publish  # noqa: E402
from tasks.platform.stage import (  # noqa: E402
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
    """Prefect retry condition: retry only a transient failure (:func:`tasks.platform.errors.is_transient`:
    a timeout, a lost connection, a busy resource, a :class:`~tasks.platform.errors.TransientError`).
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
    with progress.forward(get_run_logger()), interrupt.raising():  # progress in the run log; Ctrl-C stops it
        result = run_stage(p, st, prm, inputs)
    get_run_logger().info(
        "%s/%s %s in %.2fs", paper, stage, "reused from the store" if result.reused else "computed", result.seconds
    )
    return result.to_json()


def publish_report(paper: Paper, results: dict[str, StageResult], lineage: dict[str, str]) -> Path | None:
    """Publish the paper's ``report`` stage output with a banner and lineage section, and
    rebuild ``reports/index.md``/``.html``, as one unit (:func:`tasks.platform.report.publish`).

    The full profile without overrides goes to ``reports/<paper>/`` (the paper's verdicts);
    smoke and override runs go to ``reports/<paper>/runs/<label>/`` and never replace them.
    The report in the store stays a pure function of the stage inputs (so it caches); the
    published copy adds what ran: profile, overrides, date, commit, params hash, stage keys,
    input hashes, MLflow run. Every version stays in the store and MLflow.
    """
    from flows.papers import discover

    rep = results.get("report")
    if rep is None or "report" not in rep.outputs:
        return None
    stages = [{"stage": name, "key": r.key, "reused": r.reused, "seconds": r.seconds,
               "outputs": {k: v["sha256"] for k, v in r.outputs.items()}} for name, r in results.items()]
    return publish(rep.path("report").parent, reports_root(), paper.name, lineage, stages, discover())


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
    parent = tracker.start(params, overrides=overrides)
    results: dict[str, StageResult] = {}
    summary: dict[str, Any] = {"paper": paper.name, "profile": profile, "mlflow_run_id": parent, "stages": {}}
    try:
        for i, st in enumerate(paper.stages, 1):
            interrupt.checkpoint()
            with progress.forward(get_run_logger()):
                progress.stage(paper.name, st.name, i, len(paper.stages), t0, i - 1,
                               [n for n, v in summary["stages"].items() if v["cached"] or v["reused"]])
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
            "overrides": json.dumps(overrides, sort_keys=True) if overrides else "",
            "published": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
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
            for name in ("report.md", "report.html"):  # the HTML is self-contained (plots inlined)
                tracker.log_parent_artifact(report.with_name(name), "report")
            for png in report.parent.glob("*.png"):
                tracker.log_parent_artifact(png, "report")
            tracker.set_parent_tags({"reprolab.report": str(report)})
        computed = sum(not (v["cached"] or v["reused"]) for v in summary["stages"].values())
        summary["seconds"] = round(time.perf_counter() - t0, 2)
        claims = results["report"].outputs.get("claims") if "report" in results else None
        tracker.log_headline(
            artifacts.read(claims["path"]) if claims else {},
            {"pipeline.stages_computed": computed, "pipeline.stages_reused": len(summary["stages"]) - computed,
             "pipeline.seconds": summary["seconds"]},
        )
        tracker.finish("FINISHED")
        progress.finish()  # (not on failure: an interrupted run reports the stage it stopped in)
    except BaseException as e:
        # Ctrl-C / SIGTERM (flows/interrupt.py; Prefect's TerminationSignal) end the run KILLED.
        if interrupt.received() is not None or isinstance(e, (KeyboardInterrupt, SystemExit)) \
                or type(e).__name__ == "TerminationSignal":
            tracker.finish("KILLED", "interrupted (Ctrl-C/SIGTERM); finished stages are kept in the store")
        else:
            tracker.finish("FAILED", f"{type(e).__name__}: {e}"[:500])
        raise
    return summary


def params_hash_of(params) -> str:
    from tasks.platform.params import params_hash

    return params_hash(params)


_FLOWS: dict[str, Any] = {}


def build_flow(paper: Paper):
    """The Prefect flow of ``paper`` (built once per process); importable as
    ``flows/entrypoints.py:<paper>`` (:mod:`flows.entrypoints`), which is how every deployment
    of it loads it.

    Parameters (editable in the Prefect UI): ``profile`` ("smoke" or "full") and
    ``overrides``, a partial params section merged over ``params.yaml`` for this run only
    (e.g. ``{"prune": {"patterns": ["2:4"]}}``), validated like the file (docs/params.md).
    """
    if paper.name in _FLOWS:
        return _FLOWS[paper.name]

    def pipeline(profile: Literal["smoke", "full"] = "full", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        return run_pipeline(paper, profile, overrides)

    pipeline.__doc__ = f"Reproduce {paper.title} (arXiv:{paper.arxiv}) end to end."
    f = flow(name=paper.name, description=pipeline.__doc__, log_prints=True, validate_parameters=True)(pipeline)
    _FLOWS[paper.name] = f
    return f


PARAMS_DOC = "docs/params.md"


def example_override(paper: Paper) -> dict[str, Any]:
    """A valid ``overrides`` value for ``paper``: the first setting of its smoke profile overlay
    (``profiles.smoke.<paper>`` in ``params.yaml``), e.g. ``{"train": {"max_epochs": 8}}``.

    Raises:
        ValueError: the paper has no smoke overlay to draw an example from.
    """
    from tasks.platform.params import DEFAULT_PARAMS, read_yaml

    overlay = ((read_yaml(DEFAULT_PARAMS).get("profiles") or {}).get("smoke") or {}).get(paper.name)
    if not overlay:
        raise ValueError(f"params.yaml has no profiles.smoke.{paper.name} to draw an example override from")

    def first(d: dict[str, Any]) -> dict[str, Any]:
        key, value = next(iter(d.items()))
        return {key: first(value) if isinstance(value, dict) and value else value}

    return first(overlay)


def deployment_description(paper: Paper) -> str:
    """What the Prefect UI shows on ``paper``'s deployment: what it runs, how to override
    params for one run (an example that validates) and where the params reference is."""
    import json

    example = json.dumps(example_override(paper))
    return (
        f"Reproduce {paper.title} (arXiv:{paper.arxiv}); re-runs nightly.\n\n"
        f"Run → Custom run: `profile` is `smoke` (tiny, minutes) or `full` (the published numbers); "
        f"`overrides` is a partial `{paper.name}` section of params.yaml merged over it for this run "
        f"only and validated like the file, e.g. `{example}`. A bad key or value fails the run at once "
        f"with an error naming it.\n\n"
        f"Params reference: {PARAMS_DOC} (section `{paper.name}`), the values themselves: params.yaml."
    )


ENTRYPOINT_FILE = "flows/entrypoints.py"


def entrypoint(paper: str) -> str:
    """The importable entrypoint of ``paper``'s flow (:mod:`flows.entrypoints`), relative to the repo root."""
    return f"{ENTRYPOINT_FILE}:{paper}"


def build_deployments(papers: list[Paper], cron: str = NIGHTLY_CRON, timezone: str = "UTC", profile: str = "full"):
    """One deployment per paper flow, scheduled nightly (retraining), parameters editable.

    Each loads its flow from :func:`entrypoint` (``flows/entrypoints.py:<paper>``) (the closure ``build_flow``
    returns has no importable name of its own), relative to the working directory as Prefect
    computes it: the runner of ``prefect.serve`` starts each flow run in this directory.
    """
    from prefect.schedules import Cron

    deps = []
    for p in papers:
        dep = build_flow(p).to_deployment(
            name=f"{p.name}-nightly",
            schedule=Cron(cron, timezone=timezone),
            parameters={"profile": profile, "overrides": {}},
            description=deployment_description(p),
            tags=["reprolab", p.name],
        )
        dep.entrypoint = f"{os.path.relpath(ROOT / ENTRYPOINT_FILE)}:{p.name}"
        deps.append(dep)
    return deps


def clear_store(paper: Paper) -> None:
    """Delete a paper's store (forces recomputation of its own stages; results of shared stages, under
    ``store/_shared``, stay: other papers reuse them)."""
    from tasks.platform.stage import store_root

    shutil.rmtree(store_root() / paper.name, ignore_errors=True)
