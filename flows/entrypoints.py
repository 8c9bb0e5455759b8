"""The one importable entrypoint of every paper flow: ``flows/entrypoints.py:<paper>``.

A deployment's runner (``python -m flows serve``, a work-pool worker of ``infra/deploy.py``,
``prefect deployment run``, the nightly cron) does not receive the flow object: it re-imports
the flow from the deployment's ``entrypoint`` (Prefect 3: ``load_flow_from_entrypoint`` loads
this file as a script and takes the attribute after the colon). Paper flows are built by
:func:`flows.run.build_flow` from the paper registry, so this module resolves the attribute name
to that flow on demand (PEP 562 module ``__getattr__``): no per-paper copy to keep in sync, and
``build_flow`` names each flow's function ``flows.entrypoints.<paper>`` so that the entrypoint
Prefect computes in ``Flow.to_deployment`` is this one.

NOTE: if this file failed to import, Prefect would fall back to parsing its AST for a
``@flow``-decorated function and find none; keep it free of imports at module level.
"""

from __future__ import annotations

# The file name and ``entrypoint(paper)`` live in :mod:`flows.run` (ENTRYPOINT_FILE,
# entrypoint), which builds the deployments; this module only resolves the names.


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    from flows.papers import discover
    from flows.run import build_flow

    papers = discover()
    if name not in papers:
        raise AttributeError(f"no registered paper {name!r} (registered: {sorted(papers)})")
    return build_flow(papers[name])
