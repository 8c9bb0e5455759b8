"""Entrypoint module for paper flows run by a work-pool worker: ``infra/paper_flows.py:<paper>``.

A worker loads a deployment's flow from ``<file>:<attribute>``. Paper flows are built by
``flows.run.build_flow`` (a closure per paper), so this module resolves the attribute name to the
registered paper's flow on demand (PEP 562 module ``__getattr__``) instead of copying them.
"""

from __future__ import annotations


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    from flows.papers import discover

    papers = discover()
    if name not in papers:
        raise AttributeError(f"no registered paper {name!r} (registered: {sorted(papers)})")
    return papers[name].flow
