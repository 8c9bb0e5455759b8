"""The ``report`` stage of a tuned comparison: the paper's report with a second verdict per claim.

A paper with tuning runs its report core twice: ``report_paper`` on the arms at the paper's
settings and ``report_tuned`` on the arms tuned on an equal budget (:mod:`tasks.platform.tuning`). This
core, the paper's ``report`` stage, merges them:

* ``claims.json``: each claim of the paper's report gains ``tuned_verdict``, ``tuned_measured``
  and ``robust`` (the two verdicts agree; ``None`` for a claim not testable either way);
  ``counts`` gains ``robust`` and ``depends on tuning``;
* ``report.md``: after the claims table, a section with both verdicts per claim, the paper's
  and the tuned hyperparameters of every arm (with their validation scores), the sanity checks
  (:func:`tasks.platform.tuning.undertuned`) at both settings and the tuned arms' summary table;
* ``metrics.json``: the paper's metrics plus ``tuning.*`` counts;
* every other output of the paper's report (tables, figures) passes through unchanged.

Inputs are named ``paper_<output>`` (each output of ``report_paper``), ``tuned_claims`` and
optionally ``tuned_summary`` (of ``report_tuned``), ``study`` (the tuning stage's JSON; or one
``study_<label>`` per tuning stage, e.g. per dataset) and, for the sanity checks,
``paper_arm_<arm>`` / ``tuned_arm_<arm>`` (each arm's metrics).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from tasks.platform.errors import ReprolabError
from tasks.platform.report import fmt, table_markdown
from tasks.platform.tuning import FloorRule, TuningParams, undertuned

NOT_TESTABLE = "not testable at this scale"


def merge_claims(paper: Mapping[str, Any], tuned: Mapping[str, Any]) -> dict[str, Any]:
    """The paper's ``claims.json`` with each claim's tuned verdict (claims match by position)."""
    pc, tc = paper["claims"], tuned["claims"]
    if len(pc) != len(tc):
        raise ReprolabError(f"report_tuned has {len(tc)} claims, report_paper {len(pc)}: they must be the same report")
    claims = []
    for c, t in zip(pc, tc):
        testable = NOT_TESTABLE not in (c["verdict"], t["verdict"])
        claims.append({**c, "tuned_verdict": t["verdict"], "tuned_measured": t["measured"],
                       "robust": (c["verdict"] == t["verdict"]) if testable else None})
    counts = dict(paper["counts"])
    counts["robust"] = sum(c["robust"] is True for c in claims)
    counts["depends on tuning"] = sum(c["robust"] is False for c in claims)
    return {**paper, "claims": claims, "counts": counts}


def _status(robust: bool | None) -> str:
    return "-" if robust is None else ("**robust**" if robust else "depends on tuning")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(v: Any) -> str:
    return fmt(v) if isinstance(v, float) else json.dumps(v)


def tuning_section(
    claims: Mapping[str, Any],
    studies: Mapping[str, Mapping[str, Any]],
    flags: Mapping[str, Sequence[str]],
    tuned_summary: pa.Table | None = None,
) -> str:
    """The markdown section on robustness to tuning (see the module docstring); ``studies`` =
    ``{label: tuning JSON}`` (label ``""`` for a paper with one tuning stage)."""
    first = next(iter(studies.values()))
    b = first["budget"]
    seeds = ", ".join(str(s) for s in b["seeds"])
    out = [
        "## Robustness to tuning (an equal budget per arm)",
        "",
        f"Every arm re-tuned with the same budget: {b['n_trials']} trials x {first['epochs_per_trial']} epochs "
        f"x seed(s) {seeds} (Optuna TPE, sampler seed {b['sampler_seed']}; trial 0 is the paper's setting), "
        "selected on validation accuracy only; the chosen configuration is then trained exactly as the arm "
        "at the paper's settings (same epochs and seeds) and scored on test once. A claim is **robust** "
        "when both verdicts agree.",
        "",
        "| claim | at the paper's settings | tuned (measured) | robust? |",
        "|---|---|---|---|",
    ]
    for c in claims["claims"]:
        out.append(f"| {_cell(c['claim'])} | **{c['verdict']}** | **{c['tuned_verdict']}**: "
                   f"{_cell(c['tuned_measured'])} | {_status(c['robust'])} |")
    n = claims["counts"]
    testable = n["robust"] + n["depends on tuning"]
    out += ["", f"Robust: {n['robust']} of {testable} testable claim(s).", "",
            "### Hyperparameters: the paper's and tuned", "",
            "| arm | hyperparameter | paper | tuned | val (paper) | val (tuned) |", "|---|---|---|---|---|---|"]
    for label, study in studies.items():
        for arm in study.get("arm_order") or sorted(study["arms"]):
            a = study["arms"][arm]
            names = sorted(a["paper"]) or ["(none searched)"]
            shown = f"{arm} ({label})" if label else arm
            for i, name in enumerate(names):
                paper_v = _value(a["paper"][name]) if name in a["paper"] else "-"
                tuned_v = _value(a["tuned"][name]) if name in a["tuned"] else "-"
                vals = (fmt(a["paper_val"]) if a["paper_val"] is not None else "-", fmt(a["tuned_val"])) if i == 0 else ("", "")
                out.append(f"| {shown if i == 0 else ''} | {name} | {paper_v} | {tuned_v} | {vals[0]} | {vals[1]} |")
    out += ["", "### Sanity checks (an arm below the floor it must clear: an under-tuned baseline?)", ""]
    for setting, msgs in flags.items():
        out += [f"- {setting}: " + ("none" if not msgs else f"{len(msgs)} flag(s)")]
        out += [f"  - {m}" for m in msgs]
    if tuned_summary is not None:
        out += ["", "### Summary table of the tuned run", "", table_markdown(tuned_summary)]
    return "\n".join(out) + "\n"


def insert_after_claims(markdown: str, section: str) -> str:
    """``markdown`` with ``section`` inserted before the heading that follows "Claims and verdicts"."""
    start = markdown.find("## Claims and verdicts")
    if start < 0:
        raise ReprolabError("the paper's report has no '## Claims and verdicts' section")
    nxt = markdown.find("\n## ", start + 1)
    if nxt < 0:
        return markdown.rstrip() + "\n\n" + section
    return markdown[: nxt + 1] + section + "\n" + markdown[nxt + 1 :]


def merge_reports(
    params: TuningParams,
    *,
    floors: Sequence[FloorRule] = (),
    values: Callable[[str, Any], Mapping[int, float]] | None = None,
    higher_is_better: bool = True,
    paper_report: str,
    paper_claims: Mapping[str, Any],
    tuned_claims: Mapping[str, Any],
    tuned_summary: pa.Table | None = None,
    **inputs: Any,
) -> dict[str, Any]:
    """Stage core of a tuned paper's ``report`` (bind ``floors``/``values`` with ``functools.partial``).

    Args:
        params: the paper's ``tuning`` section (only for the stage's params hash).
        floors: sanity rules, judged on ``values(arm, input)`` (``{seed: value}``) of the
            ``paper_arm_<arm>`` and ``tuned_arm_<arm>`` inputs.
        inputs: ``paper_<output>`` of every other paper-report output (passed through),
            ``study`` / ``study_<label>`` and ``paper_arm_<arm>`` / ``tuned_arm_<arm>``.
    """
    claims = merge_claims(paper_claims, tuned_claims)
    flags: dict[str, list[str]] = {}
    for setting in ("paper", "tuned"):
        prefix = f"{setting}_arm_"
        arm_vals = {k[len(prefix):]: values(k[len(prefix):], v) for k, v in inputs.items()
                    if values is not None and k.startswith(prefix)}
        label = "at the paper's settings" if setting == "paper" else "tuned"
        flags[label] = [f.message() for f in undertuned(floors, arm_vals, higher_is_better)] if floors else []
    studies = {k.removeprefix("study").removeprefix("_"): v for k, v in inputs.items()
               if k == "study" or k.startswith("study_")}
    if not studies:
        raise ReprolabError("merge_reports needs the tuning stage's JSON as input 'study' (or 'study_<label>')")
    section = tuning_section(claims, studies, flags, tuned_summary)
    out: dict[str, Any] = {
        k[len("paper_"):]: v for k, v in inputs.items() if k.startswith("paper_") and not k.startswith("paper_arm_")
    }
    metrics = dict(out.get("metrics") or {})
    metrics["tuning"] = {
        "robust": claims["counts"]["robust"],
        "depends_on_tuning": claims["counts"]["depends on tuning"],
        "flags_paper": len(flags["at the paper's settings"]),
        "flags_tuned": len(flags["tuned"]),
        "tuned_verdicts": {c["claim"][:60]: c["tuned_verdict"] for c in claims["claims"]},
    }
    return {**out, "report": insert_after_claims(paper_report, section), "claims": claims, "metrics": metrics}
