"""Paper registry: every module in this package declares and registers one paper.

Discovery imports each module; an import error propagates (a broken paper is never
silently skipped) and a duplicate paper name raises in ``register_paper``.
"""

from __future__ import annotations

import importlib
import pkgutil

from tasks.platform.stage import Paper, registered_papers


def discover() -> dict[str, Paper]:
    """Import every paper module and return ``{name: Paper}`` (sorted by name)."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    return dict(sorted(registered_papers().items()))


def get_paper(name: str) -> Paper:
    from tasks.platform.errors import ReprolabError

    papers = discover()
    if name not in papers:
        raise ReprolabError(f"unknown paper {name!r}; registered papers: {sorted(papers)}")
    return papers[name]
