"""Reproduction reports: each claim of a paper next to our measurement and a verdict.

A paper's ``report`` stage builds :class:`Claim` objects from its measurements and
calls :func:`render_markdown` (and :func:`claims_json` for the machine-readable verdicts).
The platform (flows/run.py) then calls :func:`publish`, which appends the lineage section
(commit, params hash, input hashes, MLflow run) and writes ``reports/<paper>/report.md`` and
``report.html``, and :func:`write_index`, which rebuilds ``reports/index.md``/``index.html``
listing every registered paper with its latest verdicts. The stage output itself stays a pure
function of its inputs and caches. This module is the only renderer of reports.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

Verdict = Literal["reproduced", "not reproduced", "not testable at this scale"]
VERDICTS: tuple[str, ...] = ("reproduced", "not reproduced", "not testable at this scale")


@dataclass(frozen=True)
class Claim:
    """One claim of the paper with our measurement.

    Attributes:
        claim: the claim, quoted or paraphrased from the abstract.
        measured: what we measured, in words and numbers.
        verdict: one of :data:`VERDICTS`.
        why: the reason for the verdict (the rule applied, or why it is not testable here).
        value: the headline measured number the verdict rests on (None if there is none).
        lo, hi: its confidence interval (None where no interval applies).
        unit: unit of ``value``/``lo``/``hi`` for display (e.g. "pts").
    """

    claim: str
    measured: str
    verdict: Verdict
    why: str
    value: float | None = None
    lo: float | None = None
    hi: float | None = None
    unit: str = ""

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")
        if (self.lo is None) != (self.hi is None):
            raise ValueError(f"claim {self.claim[:40]!r}: give both lo and hi or neither")
        if self.lo is not None and self.value is None:
            raise ValueError(f"claim {self.claim[:40]!r}: a CI needs a value")
        if self.lo is not None and self.lo > self.hi:
            raise ValueError(f"claim {self.claim[:40]!r}: CI lower bound {self.lo} > upper bound {self.hi}")

    def value_text(self) -> str:
        """``0.91 [0.89, 0.93] pts`` / ``0.91`` / ``-``."""
        if self.value is None:
            return "-"
        text = fmt(float(self.value))
        if self.lo is not None:
            text += f" [{fmt(float(self.lo))}, {fmt(float(self.hi))}]"
        return f"{text} {self.unit}".rstrip()


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


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(rep: Report, ci_level: float = 0.95) -> str:
    """The report as GitHub-flavoured markdown."""
    out = [f"# Reproduction report: {rep.title}", ""]
    if rep.arxiv:
        out += [f"Paper: arXiv:{rep.arxiv} · pipeline `{rep.paper}`", ""]
    out += ["## What was run", "", rep.summary, "", "## Claims and verdicts", ""]
    counts = {v: sum(c.verdict == v for c in rep.claims) for v in VERDICTS}
    out += ["Verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n), ""]
    out += [f"| claim | our measurement | value [{100 * ci_level:.0f}% CI] | verdict | why |",
            "|---|---|---|---|---|"]
    for c in rep.claims:
        cells = [c.claim, c.measured, c.value_text(), f"**{c.verdict}**", c.why]
        out.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    out.append("")
    for title, table in rep.tables.items():
        out += [f"## {title}", "", table_markdown(table), ""]
    for title, path in rep.figures.items():
        out += [f"## {title}", "", f"![{title}]({path})", ""]
    if rep.notes:
        out += ["## Where our setting differs from the paper", ""]
        out += [n + "\n" for n in rep.notes]
    return "\n".join(out).rstrip() + "\n"


def claims_json(rep: Report) -> dict[str, Any]:
    """Machine-readable verdicts of a report (the ``claims.json`` the index page reads)."""
    return {
        "paper": rep.paper,
        "title": rep.title,
        "arxiv": rep.arxiv,
        "claims": [asdict(c) for c in rep.claims],
        "counts": {v: sum(c.verdict == v for c in rep.claims) for v in VERDICTS},
    }


def report_outputs(rep: Report) -> dict[str, Any]:
    """The two outputs every paper's ``report`` stage returns: ``report`` (markdown) and
    ``claims`` (:func:`claims_json`, which the index page reads)."""
    return {"report": render_markdown(rep), "claims": claims_json(rep)}


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .5em;vertical-align:top}"
    "img{max-width:100%}code{font-size:90%}"
)


def render_html(markdown_text: str, title: str) -> str:
    """A standalone HTML page of a markdown report (links to ``.md`` files become ``.html``)."""
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])
    # relative links between published pages point at their HTML twins
    body = re.sub(r'href="(?![a-z]+:)([^"]+)\.md"', r'href="\1.html"', body)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )


# PLATFORM: publishing (called by flows/run.py after a pipeline run) --------------------------
def lineage_markdown(lineage: Mapping[str, str], stages: Sequence[Mapping[str, Any]]) -> str:
    """The "Lineage" section: what ran (commit, params hash, MLflow run, data hashes) per stage.

    Args:
        lineage: name -> value (git commit, params hash, MLflow parent run, input hashes, ...).
        stages: one mapping per stage with ``stage``, ``key``, ``reused``, ``seconds`` and
            ``outputs`` (output name -> sha256).
    """
    lines = ["## Lineage", "", "| what | value |", "|---|---|"]
    lines += [f"| {_cell(str(k))} | `{v}` |" for k, v in lineage.items()]
    lines += ["", "| stage | cache key | reused | seconds | outputs (sha256) |", "|---|---|---|---|---|"]
    for st in stages:
        outs = ", ".join(f"{k}: `{str(v)[:12]}`" for k, v in st["outputs"].items())
        lines.append(f"| {st['stage']} | `{str(st['key'])[:12]}` | {st['reused']} | "
                     f"{float(st['seconds']):.2f} | {outs} |")
    return "\n".join(lines) + "\n"


def publish(
    report_dir: Path,
    dest: Path,
    paper: str,
    lineage: Mapping[str, str],
    stages: Sequence[Mapping[str, Any]],
) -> Path:
    """Publish a report stage's output to ``dest`` (``reports/<paper>/``) with its lineage.

    Writes ``report.md`` (the stage's markdown + the lineage section), ``report.html``, the
    PNG figures and ``claims.json`` found in ``report_dir``, and ``lineage.json``. Every write
    is atomic. Returns the path of ``report.md``.
    """
    from tasks.platform import artifacts

    text = artifacts.read(report_dir / "report.md").rstrip() + "\n\n" + lineage_markdown(lineage, stages)
    for f in sorted(report_dir.iterdir()):
        if f.suffix == ".png" or f.name == "claims.json":
            artifacts.atomic_write_bytes(dest / f.name, f.read_bytes())
    artifacts.write(dest / "lineage.json", {"lineage": dict(lineage), "stages": list(stages)})
    artifacts.write(dest / "report.md", text)
    artifacts.write(dest / "report.html", render_html(text, f"reprolab: {paper}"))
    return dest / "report.md"


def render_index(root: Path, papers: Mapping[str, Any]) -> str:
    """Markdown index of every registered paper with its latest published verdicts.

    Args:
        root: the reports directory (``reports/``); ``root/<paper>/claims.json`` and
            ``lineage.json`` are read where they exist (verdict counts show "?" for a published
            report without ``claims.json``).
        papers: registry name -> object with ``title`` and ``arxiv`` (``tasks.platform.stage.Paper``).
    """
    from tasks.platform import artifacts

    out = ["# reprolab: reproduction reports", "",
           "Every registered paper with the verdicts of its latest published run.", "",
           "| paper | title | reproduced | not reproduced | not testable | run (commit) | report |",
           "|---|---|---|---|---|---|---|"]
    details = []
    for name in sorted(papers):
        p = papers[name]
        title = f"{p.title} (arXiv:{p.arxiv})" if getattr(p, "arxiv", "") else p.title
        claims_path, lineage_path = root / name / "claims.json", root / name / "lineage.json"
        if not (root / name / "report.md").is_file():
            out.append(f"| `{name}` | {_cell(title)} | - | - | - | not run yet | - |")
            continue
        lineage = artifacts.read(lineage_path)["lineage"] if lineage_path.is_file() else {}
        commit = str(lineage.get("git_commit", "?"))[:10]
        mlflow_run = lineage.get("mlflow_parent_run", "")
        run = f"`{commit}`" + (f", MLflow `{str(mlflow_run)[:12]}`" if mlflow_run else "")
        if not claims_path.is_file():  # a report stage without a claims.json output
            out.append(f"| `{name}` | {_cell(title)} | ? | ? | ? | {run} | [report]({name}/report.md) |")
            continue
        claims = artifacts.read(claims_path)
        n = claims["counts"]
        out.append(f"| `{name}` | {_cell(title)} | {n.get('reproduced', 0)} | {n.get('not reproduced', 0)} | "
                   f"{n.get('not testable at this scale', 0)} | {run} | [report]({name}/report.md) |")
        details += [f"## {name}", ""]
        details += [f"- **{c['verdict']}**: {_cell(c['claim'])}" for c in claims["claims"]]
        details.append("")
    return "\n".join(out + [""] + details).rstrip() + "\n"


def write_index(root: Path, papers: Mapping[str, Any]) -> Path:
    """Write ``root/index.md`` and ``root/index.html`` (atomically); return the markdown path."""
    from tasks.platform import artifacts

    text = render_index(root, papers)
    artifacts.write(root / "index.md", text)
    artifacts.write(root / "index.html", render_html(text, "reprolab: reproduction reports"))
    return root / "index.md"
