"""Reproduction reports: each claim of a paper next to our measurement and a verdict.

A paper's ``report`` stage builds :class:`Claim` objects from its measurements and
calls :func:`render_markdown` / :func:`render_html`. The platform (flows/run.py, the DVC
CLI) appends the lineage section (commit, params hash, input hashes, MLflow run) when it
publishes the report under ``reports/<paper>/``, so the stage output itself stays a pure
function of its inputs and caches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import pyarrow as pa

Verdict = Literal["reproduced", "not reproduced", "not testable at this scale"]
VERDICTS: tuple[str, ...] = ("reproduced", "not reproduced", "not testable at this scale")


@dataclass(frozen=True)
class Claim:
    """One claim of the paper with our measurement.

    Attributes:
        claim: the claim, quoted or paraphrased from the abstract.
        measured: what we measured, in words and numbers (with the CI where there is one).
        verdict: one of :data:`VERDICTS`.
        why: the reason for the verdict (the rule applied, or why it is not testable here).
    """

    claim: str
    measured: str
    verdict: Verdict
    why: str

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")


@dataclass
class Report:
    """Everything a reproduction report shows.

    Attributes:
        title: the seed paper's title; paper: registry name; arxiv: arXiv id.
        summary: a paragraph on what was run.
        claims: claim-by-claim verdicts.
        tables: titled tables (pyarrow) shown in order.
        figures: titled PNG files, relative to the report.
        notes: paragraphs on where our scale, data or hardware differ from the paper.
    """

    title: str
    paper: str
    arxiv: str
    summary: str
    claims: Sequence[Claim]
    tables: dict[str, pa.Table] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)
    notes: Sequence[str] = ()

    def verdicts(self) -> dict[str, str]:
        return {c.claim: c.verdict for c in self.claims}


def fmt(x: object, digits: int = 4) -> str:
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.{digits}g}"
    return str(x)


def table_markdown(table: pa.Table, digits: int = 4) -> str:
    cols = table.column_names
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in table.to_pylist():
        lines.append("| " + " | ".join(fmt(row[c], digits) for c in cols) + " |")
    return "\n".join(lines)


def render_markdown(rep: Report) -> str:
    """The report as GitHub-flavoured markdown."""
    out = [f"# Reproduction report: {rep.title}", ""]
    if rep.arxiv:
        out += [f"Paper: arXiv:{rep.arxiv} · pipeline `{rep.paper}`", ""]
    out += ["## What was run", "", rep.summary, "", "## Claims and verdicts", ""]
    out += ["| claim | our measurement | verdict | why |", "|---|---|---|---|"]
    for c in rep.claims:
        cells = [c.claim, c.measured, f"**{c.verdict}**", c.why]
        out.append("| " + " | ".join(s.replace("|", "\\|").replace("\n", " ") for s in cells) + " |")
    out.append("")
    for title, table in rep.tables.items():
        out += [f"## {title}", "", table_markdown(table), ""]
    for title, path in rep.figures.items():
        out += [f"## {title}", "", f"![{title}]({path})", ""]
    if rep.notes:
        out += ["## Where our setting differs from the paper", ""]
        out += [n + "\n" for n in rep.notes]
    return "\n".join(out).rstrip() + "\n"


def render_html(markdown_text: str, title: str) -> str:
    """A standalone HTML page of a markdown report."""
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])
    style = (
        "body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .5em}"
        "img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{style}</style></head><body>{body}</body></html>\n"
    )
