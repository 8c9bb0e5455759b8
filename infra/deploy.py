"""Deploy flows to the served Prefect server's process work pool.

A deployment loads its flow from this checkout (``flow.from_source(<repo root>, "<file>:<fn>")``),
carries a cron schedule (nightly retraining by default) and default parameters a user edits
in the UI before pressing *Run*. The worker started by ``infra.stack`` executes the runs with the
client environment of the stack, so flows reach MLflow/S3 purely by configuration.

CLI: ``python -m infra.deploy`` (uses ``PREFECT_API_URL`` of the running stack).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any
from uuid import UUID

from prefect import flow as prefect_flow

from infra.config import REPO_ROOT, load_config
from infra.stack import StackState, client_env

NIGHTLY_CRON = "0 3 * * *"

# Flows of this package that are deployed with the stack (entrypoint, deployment name, defaults).
INFRA_FLOWS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("infra/workloads.py:tracked_flow", "tracked-nightly", {"run_key": "nightly", "steps": 3}),
)


def deploy_entrypoint(entrypoint: str, name: str, *, work_pool: str, cron: str | None = NIGHTLY_CRON,
                      parameters: dict[str, Any] | None = None, timezone: str = "UTC",
                      description: str | None = None, schedules: list | None = None,
                      tags: list[str] | None = None) -> UUID:
    """Create/update a deployment of ``entrypoint`` (``path/to/file.py:flow_fn``, relative to the repo).

    Returns:
        The deployment id (idempotent: deploying again updates the same deployment).
    """
    if ":" not in entrypoint:
        raise ValueError(f"entrypoint {entrypoint!r} must look like 'path/to/file.py:flow_function'")
    path = REPO_ROOT / entrypoint.split(":", 1)[0]
    if not path.is_file():
        raise ValueError(f"entrypoint file {path} does not exist")
    loaded = prefect_flow.from_source(source=str(REPO_ROOT), entrypoint=entrypoint)
    schedule_kwargs: dict[str, Any] = {}
    if schedules is not None:
        schedule_kwargs["schedules"] = schedules
    elif cron:
        from prefect.schedules import Cron

        schedule_kwargs["schedules"] = [Cron(cron, timezone=timezone)]
    # from_source(<local dir>) adds a `set_working_directory` pull step: the worker runs the flow
    # in this checkout (not in a temporary copy), so default output paths stay where they belong.
    return loaded.deploy(
        name=name, work_pool_name=work_pool, parameters=parameters or {}, description=description,
        tags=tags, print_next_steps=False, ignore_warnings=True, **schedule_kwargs,
    )


def deploy_papers(work_pool: str, cron: str | None = None, papers: list[str] | None = None) -> dict[str, UUID]:
    """Deploy every registered paper flow (``flows.papers``) to ``work_pool``.

    The deployments themselves (name ``<paper>-nightly``, nightly cron, editable ``profile`` /
    ``overrides`` parameters, description, tags) come from the lead's ``flows.run.build_deployments``
    (what ``python -m flows serve`` serves); only where they run changes: a work pool instead of a
    ``serve`` process, loading the flow from the same ``flows/entrypoints.py:<paper>`` in this checkout.

    Returns:
        ``{"<paper>/<paper>-nightly": deployment id}``.
    """
    from flows.run import entrypoint
    from flows.papers import discover, get_paper
    from flows.run import NIGHTLY_CRON as PAPER_CRON
    from flows.run import build_deployments

    selected = [get_paper(n) for n in papers] if papers else list(discover().values())
    out: dict[str, UUID] = {}
    for paper, dep in zip(selected, build_deployments(selected, cron=cron or PAPER_CRON), strict=True):
        out[f"{paper.name}/{dep.name}"] = deploy_entrypoint(
            entrypoint(paper.name), dep.name, work_pool=work_pool, parameters=dep.parameters,
            description=dep.description, schedules=[_as_schedule(s) for s in dep.schedules or []], tags=dep.tags,
        )
    return out


def _as_schedule(deployment_schedule):
    """A RunnerDeployment's schedule entry -> a ``prefect.schedules.Cron``/``Interval`` for ``deploy``."""
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
    from prefect.schedules import Cron, Interval

    inner = deployment_schedule.schedule
    if isinstance(inner, CronSchedule):
        return Cron(inner.cron, timezone=inner.timezone or "UTC")
    if isinstance(inner, IntervalSchedule):
        return Interval(inner.interval, anchor_date=inner.anchor_date, timezone=inner.timezone)
    raise TypeError(f"unsupported schedule type {type(inner).__name__} in a paper deployment")


def deploy_all(work_pool: str | None = None) -> dict[str, UUID]:
    """Deploy every flow the stack serves (infra flows + every paper); ``{"<flow>/<deployment>": id}``."""
    work_pool = work_pool or load_config().work_pool
    out: dict[str, UUID] = {}
    for entrypoint, name, params in INFRA_FLOWS:
        out[f"{entrypoint}/{name}"] = deploy_entrypoint(entrypoint, name, work_pool=work_pool, parameters=params)
    out.update(deploy_papers(work_pool))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.deploy", description=__doc__.split("\n")[0])
    parser.parse_args(argv)
    cfg = load_config()
    env = client_env(cfg, StackState.load(cfg))
    for key in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_URI"):
        if key in env:
            os.environ.setdefault(key, env[key])
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: os.environ["PREFECT_API_URL"],
                             PREFECT_API_AUTH_STRING: os.environ.get("PREFECT_API_AUTH_STRING")}):
        for key, dep_id in deploy_all(cfg.work_pool).items():
            print(f"deployed {key}: {dep_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
