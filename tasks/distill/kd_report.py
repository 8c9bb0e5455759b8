"""Report cores (claims, measurements, verdicts) of the three logit-KD seed papers.

Each core takes the per-arm ``metrics.json`` of the distill stages (keyword
``metrics_<arm>``) and the teacher's training metrics, and returns the report (markdown),
a summary table and flat metrics. Verdict rules are fixed here, before any run:

* a claim "A beats B" is **reproduced** when the paired 95 % bootstrap CI of the mean
  per-seed difference A - B (test accuracy) lies above 0, and **not reproduced**
  otherwise (CI straddles 0: no measurable gain; CI below 0: the opposite);
* a claim about a method or setting we do not run is **not testable at this scale**.

The papers' reference numbers are quoted from ``shared/research/anchors_compression.md``
(CIFAR-100 ResNet32x4 -> ResNet8x4 unless stated).
"""

from __future__ import annotations

from typing import Any, Mapping

import pyarrow as pa

from tasks.evaluation.seeds import arm_table, comparison_table, describe, paired, per_seed, summary_metrics, verdict
from tasks.platform.errors import ReprolabError
from tasks.platform.report import Claim, Report, report_outputs

METRIC = "test.acc"


def collect(arms: Mapping[str, Any]) -> dict[str, dict[int, float]]:
    """``{arm: {seed: test acc}}`` from keyword inputs named ``metrics_<arm>``."""
    out = {}
    for key, m in arms.items():
        if not key.startswith("metrics_"):
            raise ReprolabError(f"report input {key!r}: expected metrics_<arm>")
        out[key[len("metrics_"):]] = per_seed(m, METRIC)
    return out


def teacher_values(arms: Mapping[str, Any], key: str = "teacher_test.acc") -> dict[int, float]:
    """The teacher's per-seed test accuracy, as recorded by the (first) distill arm."""
    return per_seed(next(iter(arms.values())), key)


def claim_better(claim: str, a: str, b: str, vals: Mapping[str, Mapping[int, float]], why_extra: str = "") -> Claim:
    """Claim "a beats b", judged by the paired CI rule."""
    c = paired(vals[a], vals[b])
    rule = f"{a} - {b} (test acc): CI {'above 0' if c['lo'] > 0 else 'below 0' if c['hi'] < 0 else 'includes 0'}"
    return Claim(claim, f"{a} - {b}: {describe(c)}", verdict(c, ">"), rule + (f"; {why_extra}" if why_extra else ""))


def build(
    title: str,
    paper: str,
    arxiv: str,
    summary: str,
    claims: list[Claim],
    vals: dict[str, dict[int, float]],
    labels: Mapping[str, str],
    pairs: Mapping[str, tuple[str, str]],
    notes: list[str],
) -> dict[str, Any]:
    table = arm_table(vals, labels)
    cmp = comparison_table({name: (vals[a], vals[b]) for name, (a, b) in pairs.items()})
    rep = Report(
        title=title,
        paper=paper,
        arxiv=arxiv,
        summary=summary,
        claims=claims,
        tables={"Test accuracy per arm (mean over seeds, 95% bootstrap CI)": table, "Paired differences (test accuracy)": cmp},
        notes=notes,
    )
    metrics = {**summary_metrics(vals), "verdicts": {c.claim[:60]: c.verdict for c in claims}}
    for row in cmp.to_pylist():
        metrics[f"diff.{row['comparison']}"] = row["diff"]
    return {**report_outputs(rep), "summary": table, "metrics": metrics}


def setting(vals: Mapping[str, Mapping[int, float]]) -> str:
    """The shared-setting sentence of a KD report (seeds per arm and what every arm shares)."""
    n = len(next(iter(vals.values())))
    return f"{n} seeds per arm, every arm with the same data, teacher, student, epochs and optimiser"


# --------------------------------------------------------------------------------------------
# PAPER: Logit Standardization in KD (Sun et al., CVPR 2024, arXiv 2403.01427)
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# PAPER: PLD (Bassam, Zhu, Bian 2025, arXiv 2506.12542)
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# PAPER: Dual-Head KD (Yang et al. 2024, arXiv 2411.08937)
# --------------------------------------------------------------------------------------------


def summary_schema() -> pa.Schema:
    return pa.schema(
        [("arm", pa.string()), ("what", pa.string()), ("seeds", pa.int64()), ("mean", pa.float64()),
         ("ci_lo", pa.float64()), ("ci_hi", pa.float64())]
    )
