"""Reproduction reports: each claim of a paper next to our measurement and a verdict.

A paper's ``report`` stage builds :class:`Claim` objects from its measurements and
calls :func:`render_markdown` (and :func:`claims_json` for the machine-readable verdicts).
The platform (flows/run.py) then calls :func:`publish`, which adds a banner (profile,
overrides, date, commit) and the lineage section (commit, params hash, input hashes, MLflow
run), writes ``report.md`` and a self-contained ``report.html`` to ``reports/<paper>/`` (full
profile, no overrides: the paper's verdicts) or ``reports/<paper>/runs/<label>/`` (smoke and
override runs, which never replace them), and rebuilds ``reports/index.md``/``index.html``, as
one unit (staging directory + journal). The stage output itself stays a pure function of its
inputs and caches. This module is the only renderer of reports.
"""

from __future__ import annotations

import contextlib
import html
import math
import os
import re
import shutil
import time
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
    out += ["Verdicts: " + ", ".join(f"{n} **{v}**" for v, n in counts.items() if n), ""]
    out += [f"| claim | our measurement | value [{100 * ci_level:.0f}% CI] | verdict | why |",
            "|---|---|---|---|---|"]
    for c in rep.claims:
        cells = [c.claim, c.measured, c.value_text(), f"**{c.verdict}**", c.why]
        out.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    out.append("")
    # the plots support the claims: they come right after them, before the detail tables
    for title, path in rep.figures.items():
        out += [f"## {title}", "", f"![{title}]({path})", ""]
    for title, table in rep.tables.items():
        out += [f"## {title}", "", table_markdown(table), ""]
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
    "body{font-family:system-ui,sans-serif;max-width:75em;margin:1.5em auto;padding:0 1em;line-height:1.4}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .5em;"
    "vertical-align:top;overflow-wrap:break-word}th{background:#f4f4f4}"
    ".scroll{max-width:100%;overflow-x:auto}"  # a wide table scrolls inside its box, never the page
    "img{max-width:100%;height:auto}code{font-size:90%;overflow-wrap:anywhere}"
    ".banner{border:1px solid #9ab;border-left:6px solid #36c;background:#eef4fb;margin:0 0 1em;"
    "padding:.5em 1em}.banner.unofficial{border-left-color:#d80;background:#fff6e5}"
    ".verdict{padding:0 .35em;border-radius:3px;white-space:nowrap}"
    ".v-reproduced{background:#d8f0d8;color:#164d16}.v-not-reproduced{background:#f8dada;color:#7a1212}"
    ".v-not-testable{background:#eee;color:#555}"
)
_VERDICT_CLASS = {"reproduced": "v-reproduced", "not reproduced": "v-not-reproduced",
                  "not testable at this scale": "v-not-testable"}


def _inline_image(match: re.Match, base_dir: Path | None) -> str:
    """``<img src="x.png">`` -> a ``data:`` URI when ``base_dir/x.png`` exists (self-contained page)."""
    import base64

    src = html.unescape(match["src"])
    if base_dir is None or re.match(r"^[a-z]+:", src) or not (base_dir / src).is_file():
        return match[0]
    data = base64.b64encode((base_dir / src).read_bytes()).decode()
    return match[0].replace(f'src="{match["src"]}"', f'src="data:image/png;base64,{data}"')


def render_html(markdown_text: str, title: str, base_dir: Path | None = None) -> str:
    """A standalone HTML page of a markdown report.

    Links to ``.md`` files become ``.html``; PNGs found in ``base_dir`` are inlined as ``data:``
    URIs, so the page shows its plots wherever it is opened (MLflow's artifact view, a mail);
    verdicts are colour-coded; the first blockquote is the run banner; wide tables scroll in
    their own box, so the page itself never scrolls sideways.
    """
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])
    # relative links between published pages point at their HTML twins
    body = re.sub(r'href="(?![a-z]+:)([^"]+)\.md"', r'href="\1.html"', body)
    body = re.sub(r'<img [^>]*src="(?P<src>[^"]+)"[^>]*>', lambda m: _inline_image(m, base_dir), body)
    for verdict, cls in _VERDICT_CLASS.items():
        body = body.replace(f"<strong>{verdict}</strong>", f'<strong class="verdict {cls}">{verdict}</strong>')
    body = body.replace("<table>", '<div class="scroll"><table>').replace("</table>", "</table></div>")
    if "<blockquote>" in body:
        unofficial = "not the paper" in body.split("</blockquote>", 1)[0]
        body = body.replace("<blockquote>", f'<blockquote class="banner{" unofficial" if unofficial else ""}">', 1)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )


# PLATFORM: publishing (called by flows/run.py after a pipeline run) --------------------------
OFFICIAL_PROFILE = "full"
JOURNAL = ".publish.json"


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


def is_official(profile: str, overrides: Any) -> bool:
    """Whether a run's verdicts are the paper's: the full profile with no overrides."""
    return profile == OFFICIAL_PROFILE and not overrides


def run_label(profile: str, overrides: Mapping[str, Any] | None) -> str:
    """``smoke`` / ``full-overrides-1a2b3c4d``: the folder of a run that is not the published one."""
    if not overrides:
        return profile
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:8]
    return f"{profile}-overrides-{digest}"


def publication_dir(root: Path, paper: str, profile: str, overrides: Mapping[str, Any] | None = None) -> Path:
    """Where a run is published: ``root/<paper>/`` for the full profile without overrides (the
    paper's verdicts), else ``root/<paper>/runs/<label>/`` (:func:`run_label`), never replacing them."""
    if is_official(profile, overrides):
        return root / paper
    return root / paper / "runs" / run_label(profile, overrides)


def banner_markdown(lineage: Mapping[str, Any]) -> str:
    """One blockquote line: published or not, profile, overrides, date, commit, MLflow run."""
    profile = str(lineage.get("profile", "?"))
    overrides = lineage.get("overrides") or ""
    commit = str(lineage.get("git_commit", "?"))[:10]
    dirty = " (uncommitted changes)" if lineage.get("git_dirty") == "true" else ""
    head = ("**Published run: the paper's verdicts**" if is_official(profile, overrides)
            else f"**{profile.capitalize()} run{' with overrides' if overrides else ''}: not the paper's verdicts**")
    parts = [head, f"profile **{profile}**", f"overrides: `{overrides}`" if overrides else "overrides: none",
             str(lineage.get("published", "")), f"commit `{commit}`{dirty}"]
    if lineage.get("mlflow_parent_run") not in (None, "", "disabled"):
        parts.append(f"MLflow run `{lineage['mlflow_parent_run']}`")
    return "> " + " · ".join(p for p in parts if p) + "\n"


def _with_banner(text: str, banner: str) -> str:
    """Insert ``banner`` after the report's title line (or at the top)."""
    first, _, rest = text.partition("\n")
    if first.startswith("# "):
        return f"{first}\n\n{banner}\n{rest.lstrip()}"
    return f"{banner}\n{text}"


def build_publication(
    report_dir: Path, dest: Path, paper: str, lineage: Mapping[str, Any], stages: Sequence[Mapping[str, Any]],
) -> Path:
    """Write one publication into the (new) directory ``dest``; return its ``report.md``.

    ``report.md`` = the banner (:func:`banner_markdown`) + the stage's markdown + the lineage
    section; ``report.html`` the same, self-contained; the PNG figures and ``claims.json``
    found in ``report_dir``; ``lineage.json``.
    """
    from tasks.platform import artifacts

    text = artifacts.read(report_dir / "report.md").rstrip() + "\n\n" + lineage_markdown(lineage, stages)
    text = _with_banner(text, banner_markdown(lineage))
    for f in sorted(report_dir.iterdir()):
        if f.suffix == ".png" or f.name == "claims.json":
            artifacts.atomic_write_bytes(dest / f.name, f.read_bytes())
    artifacts.write(dest / "lineage.json", {"lineage": dict(lineage), "stages": list(stages)})
    artifacts.write(dest / "report.md", text)
    artifacts.write(dest / "report.html", render_html(text, f"reprolab: {paper}", base_dir=dest))
    return dest / "report.md"


@contextlib.contextmanager
def _publish_lock(root: Path):
    """Serialise publishers of one reports tree (released by the OS if the holder is killed)."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".publish.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _pid_gone(name: str) -> bool:
    from tasks.platform.process import pid_alive

    pid = name.split(".")[-3]  # .<name>.<pid>.<ns>.staging / .old
    return pid.isdigit() and not pid_alive(int(pid))


def _copy_tree_linked(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` by hard links where the file system allows (cheap, same bytes)."""
    def link_or_copy(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link_or_copy)


PUBLICATION_ID = ".publication-id"


def _publication_id(d: Path) -> str:
    try:
        return (d / PUBLICATION_ID).read_text().strip()
    except OSError:
        return ""


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one step (Linux ``renameat2(RENAME_EXCHANGE)``); ``False`` where
    the system or file system cannot, and the caller renames twice (the journal covers the gap)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _commit(root: Path, journal: Mapping[str, str], papers: Mapping[str, Any] | None) -> None:
    """Roll a journaled publication forward: staged dir into place, index rebuilt, old dir removed.

    Every step can be repeated, so a publisher killed at any point is completed by the next one.
    """
    from tasks.platform import artifacts

    dest, staging, old = (root / journal[k] for k in ("dest", "staging", "old"))
    if staging.is_dir() and _publication_id(staging) == journal["id"]:  # not swapped in yet
        if not (dest.exists() and _exchange(staging, dest)):
            if dest.exists():
                os.rename(dest, old)
            os.rename(staging, dest)
    if staging.is_dir():  # after an exchange it holds the old publication
        os.rename(staging, old)
    if papers is None:  # the caller cannot render the index: leave the journal for one who can
        artifacts.write(root / JOURNAL, {**journal, "index": "pending"})
        return
    text = render_index(root, papers)
    artifacts.write(root / "index.md", text)
    artifacts.write(root / "index.html", render_html(text, "reprolab: reproduction reports"))
    shutil.rmtree(old, ignore_errors=True)
    (root / JOURNAL).unlink(missing_ok=True)


def recover(root: Path, papers: Mapping[str, Any] | None = None) -> bool:
    """Complete a publication interrupted by a kill (see :func:`publish`); clear staging dirs
    of dead publishers. Returns whether one was completed. Call with the reports lock held."""
    from tasks.platform import artifacts

    done = False
    if (root / JOURNAL).is_file():
        _commit(root, artifacts.read(root / JOURNAL), papers)
        done = True
    for pattern in ("*/.*.staging", "*/runs/.*.staging", ".*.staging", "*/.*.old", "*/runs/.*.old", ".*.old"):
        for d in root.glob(pattern):
            if d.is_dir() and _pid_gone(d.name):
                shutil.rmtree(d, ignore_errors=True)
    return done


def publish(
    report_dir: Path,
    root: Path,
    paper: str,
    lineage: Mapping[str, Any],
    stages: Sequence[Mapping[str, Any]],
    papers: Mapping[str, Any] | None = None,
) -> Path:
    """Publish a report stage's output under ``root`` with its lineage; rebuild the index.

    ``lineage["profile"]`` and ``lineage["overrides"]`` choose the folder
    (:func:`publication_dir`): a smoke or override run never replaces the paper's published
    verdicts. The publication is built complete in a staging directory, then a journal
    (``root/.publish.json``) is written, the staging directory exchanged with the published one
    in one step (``renameat2``) and the index (``papers`` given) rebuilt; a kill at any moment
    leaves the old or the new publication whole (report.md never without its report.html), and
    the next publisher, or :func:`write_index`, completes the journal. Returns the published ``report.md``.
    """
    from tasks.platform import artifacts

    overrides = lineage.get("overrides") or None
    if isinstance(overrides, str):
        import json

        overrides = json.loads(overrides)
    dest = publication_dir(root, paper, str(lineage.get("profile", OFFICIAL_PROFILE)), overrides)
    tag = f"{os.getpid()}.{time.monotonic_ns()}"
    with _publish_lock(root):
        recover(root, papers)
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = dest.parent / f".{dest.name}.{tag}.staging"
        try:
            staging.mkdir()
            build_publication(report_dir, staging, paper, lineage, stages)
            artifacts.atomic_write_bytes(staging / PUBLICATION_ID, tag.encode())
            if (dest / "runs").is_dir():  # the official folder keeps the other runs' folders
                _copy_tree_linked(dest / "runs", staging / "runs")
            journal = {k: str(v.relative_to(root)) for k, v in
                       (("dest", dest), ("staging", staging), ("old", dest.parent / f".{dest.name}.{tag}.old"))}
            journal["id"] = tag
            artifacts.write(root / JOURNAL, journal)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _commit(root, journal, papers)
    return dest / "report.md"


def _published(d: Path) -> dict[str, Any] | None:
    """What the index shows of the publication in ``d`` (``None`` when there is none)."""
    from tasks.platform import artifacts

    if not (d / "report.md").is_file():
        return None
    lineage = artifacts.read(d / "lineage.json")["lineage"] if (d / "lineage.json").is_file() else {}
    claims = artifacts.read(d / "claims.json") if (d / "claims.json").is_file() else None
    commit = str(lineage.get("git_commit", "?"))[:10]
    mlflow_run = lineage.get("mlflow_parent_run", "")
    run = f"`{commit}`" + (f", MLflow `{str(mlflow_run)[:12]}`" if mlflow_run not in ("", "disabled") else "")
    n = claims["counts"] if claims else {}
    counts = [str(n.get(v, 0)) if claims else "?" for v in VERDICTS]
    robust = "?" if not claims else "-" if "robust" not in n else f"{n['robust']} of {n['robust'] + n['depends on tuning']}"
    return {"lineage": lineage, "claims": claims, "run": run, "counts": counts, "robust": robust,
            "profile": str(lineage.get("profile", "?")), "overrides": lineage.get("overrides") or "",
            "date": str(lineage.get("published", "?"))}


def _tuning_mark(claim: Mapping[str, Any]) -> str:
    """`` (robust)`` / `` (tuned: <verdict>; depends on tuning)`` for a claim with a tuned verdict
    (``tasks.platform.tuning_report``)."""
    if claim.get("robust") is None:
        return ""
    return " (robust)" if claim["robust"] else f" (tuned: {claim['tuned_verdict']}; depends on tuning)"


def render_index(root: Path, papers: Mapping[str, Any]) -> str:
    """Markdown index of every registered paper with the verdicts of its published run.

    Args:
        root: the reports directory (``reports/``); ``root/<paper>/`` is a paper's published
            run (full profile, no overrides), ``root/<paper>/runs/<label>/`` its smoke and
            override runs, listed apart as "not the paper's verdicts". Verdict counts show "?"
            for a publication without ``claims.json``.
        papers: registry name -> object with ``title`` and ``arxiv`` (``tasks.platform.stage.Paper``).
    """
    out = ["# reprolab: reproduction reports", "",
           "Every registered paper with the verdicts of its published run (the full profile "
           "without overrides). Smoke and override runs are listed apart below: they are not "
           "the papers' verdicts. **Robust**: claims whose verdict is the same at the paper's settings "
           "and with every arm tuned on an equal budget (`tasks/platform/tuning.py`; `-`: the paper "
           "has no tuned comparison).", "",
           "| paper | title | reproduced | not reproduced | not testable | robust | profile | date | run (commit) | report |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    others = ["## Other runs (smoke, overrides): not the papers' verdicts", "",
              "| paper | profile | overrides | date | reproduced | not reproduced | not testable | run (commit) | report |",
              "|---|---|---|---|---|---|---|---|---|"]
    details: list[str] = []
    n_others = 0
    for name in sorted(papers):
        p = papers[name]
        title = f"{p.title} (arXiv:{p.arxiv})" if getattr(p, "arxiv", "") else p.title
        pub = _published(root / name)
        runs = [(d, _published(d)) for d in sorted((root / name / "runs").glob("*"))
                if not d.name.startswith(".")]  # not a staging or replaced folder
        if pub is not None and not is_official(pub["profile"], pub["overrides"]):
            runs.insert(0, (root / name, pub))  # published by older code: shown, not as the verdict
            pub = None
        for d, other in runs:
            if other is None:
                continue
            n_others += 1
            link = f"{d.relative_to(root).as_posix()}/report.md"
            ov = f"`{_cell(str(other['overrides']))}`" if other["overrides"] else "none"
            others.append(f"| `{name}` | {other['profile']} | {ov} | {other['date']} | "
                          f"{' | '.join(other['counts'])} | {other['run']} | [report]({link}) |")
        if pub is None:
            out.append(f"| `{name}` | {_cell(title)} | - | - | - | - | - | - | no full run published yet | - |")
            continue
        out.append(f"| `{name}` | {_cell(title)} | {' | '.join(pub['counts'])} | {pub['robust']} | {pub['profile']} | "
                   f"{pub['date']} | {pub['run']} | [report]({name}/report.md) |")
        if pub["claims"]:
            details += [f"## {name}", ""]
            details += [f"- **{c['verdict']}**{_tuning_mark(c)}: {_cell(c['claim'])}" for c in pub["claims"]["claims"]]
            details.append("")
    blocks = out + [""] + details
    if n_others:
        blocks += others + [""]
    return "\n".join(blocks).rstrip() + "\n"


def write_index(root: Path, papers: Mapping[str, Any]) -> Path:
    """Rebuild ``root/index.md`` and ``root/index.html`` (atomically, completing an interrupted
    publication first); return the markdown path."""
    from tasks.platform import artifacts

    with _publish_lock(root):
        if not recover(root, papers):
            text = render_index(root, papers)
            artifacts.write(root / "index.md", text)
            artifacts.write(root / "index.html", render_html(text, "reprolab: reproduction reports"))
    return root / "index.md"
