"""Active Learning for Convolutional Neural Networks: A Core-Set Approach (Sener & Savarese,
ICLR 2018; seed 003_49ae51092b0cdefc.txt #60; round2_candidates.md §1.2): the computation.

Per dataset: for every seed and every selector, the pool-based AL loop of
:mod:`tasks.data_selection.active` (same initial set per seed for every selector, a fresh
MLP per round, ``batch_size`` queries per round) -> a learning curve and its normalised area
(AULC). The batch study reruns a few selectors at several query batch sizes with the same total
label budget (so the curves span the same labelled-set sizes). The report pairs selectors by
(dataset, seed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from scipy import stats

from tasks.data_selection.active import (
    CURVE_SCHEMA,
    PICKS_SCHEMA,
    ALParams,
    active_learning,
    aulc,
)
from tasks.data_selection.selection import selectors as registered_selectors
from tasks.evaluation.seeds import arm_table, describe, interval_fields, paired, verdict
from tasks.platform.params import Seeds

DATASETS = ("digits", "mnist1d")
UNCERTAINTY = ("entropy", "margin", "least_confidence", "bald")
REQUIRED = ("random", "kcenter")
#: The batch study's curves and picks: the loop's schemas plus the query batch size of the run.
BATCH_CURVE_SCHEMA = pa.schema([("batch_size", pa.int64()), *CURVE_SCHEMA])
BATCH_PICKS_SCHEMA = pa.schema([("batch_size", pa.int64()), *PICKS_SCHEMA])


def _check_selectors(v: tuple[str, ...]) -> tuple[str, ...]:
    known = registered_selectors()
    bad = [s for s in v if s not in known]
    if bad:
        raise ValueError(f"unknown selector(s) {bad}; registered: {known}")
    missing = [s for s in REQUIRED if s not in v]
    if missing or not set(v) & set(UNCERTAINTY):
        raise ValueError(f"selectors must include {list(REQUIRED)} and one of {list(UNCERTAINTY)}, got {list(v)}")
    return v


class BatchStudy(BaseModel):
    """The ``loop.batch_study`` section: the "batch setting" comparison.

    Every selector listed runs the AL loop once per batch size ``b`` in ``batch_sizes`` with
    ``rounds = al.rounds * al.batch_size / b``: the same initial set, the same total label
    budget, so every curve spans the same labelled-set sizes and the AULCs are comparable
    across batch sizes (a small batch has more, finer rounds: more retrainings).

    Attributes:
        batch_sizes: >= 2 distinct query batch sizes, each dividing the main loop's budget
            ``al.rounds * al.batch_size``.
        selectors: who runs at every batch size; must include ``random``, ``kcenter`` and one
            uncertainty selector (the report's baseline when listed).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_sizes: tuple[int, ...] = (10, 100)
    selectors: tuple[str, ...] = ("random", "entropy", "kcenter")

    @field_validator("batch_sizes")
    @classmethod
    def _sizes(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(v)) < 2 or len(set(v)) != len(v) or min(v) < 1:
            raise ValueError(f"batch_sizes must be >= 2 distinct integers >= 1, got {list(v)}")
        return tuple(sorted(v))

    @field_validator("selectors")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _check_selectors(v)


class LoopParams(BaseModel):
    """The ``loop`` section: the AL loop and who runs it.

    Attributes:
        al: initial set, batch size, rounds, model, optimiser, MC samples (:class:`ALParams`).
        selectors: registered selectors to compare; must include ``random``, ``kcenter`` and at
            least one uncertainty selector (entropy, margin, least_confidence, bald).
        options: per-selector options (e.g. ``robust_kcenter: {outlier_fraction: 0.01}``).
        seeds: one AL run per seed and selector (the initial set depends on the seed only).
        batch_study: the batch-size comparison (:class:`BatchStudy`), same seeds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    al: ALParams = ALParams()
    selectors: tuple[str, ...] = ("random", "entropy", "margin", "bald", "kcenter", "robust_kcenter", "badge")
    options: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"robust_kcenter": {"outlier_fraction": 0.01}})
    seeds: Seeds = (0, 1, 2, 3, 4)
    batch_study: BatchStudy = BatchStudy()

    @field_validator("selectors")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _check_selectors(v)

    @model_validator(mode="after")
    def _options_for_listed(self):
        extra = sorted(set(self.options) - set(self.selectors) - set(self.batch_study.selectors))
        if extra:
            raise ValueError(f"options given for selectors not in the list: {extra}")
        budget = self.al.rounds * self.al.batch_size
        bad = [b for b in self.batch_study.batch_sizes if budget % b]
        if bad:
            raise ValueError(f"batch_study.batch_sizes {bad} do not divide the label budget al.rounds * al.batch_size "
                             f"= {budget}")
        return self


class ReportParams(BaseModel):
    """The ``report`` section. Attributes: baseline: the uncertainty selector claim 3 compares against."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    baseline: str = "entropy"


# PAPER: one dataset: every selector x seed through the AL loop ------------------------------
def run_al(params: LoopParams, *, train: pa.Table, val: pa.Table, test: pa.Table) -> dict[str, object]:
    """Learning curves (:data:`CURVE_SCHEMA` rows of every selector x seed), every round's selection
    (:data:`PICKS_SCHEMA`: ``dvc diff`` shows which ids a change of selector or seed moved) and AULC per run."""
    curves, picks, aulcs = [], [], {}
    for sel in params.selectors:
        for seed in params.seeds:
            c, p = active_learning(params.al, sel, seed, train=train, val=val, test=test, options=params.options.get(sel))
            curves.append(c)
            picks.append(p)
            aulcs[f"{sel}.{seed}"] = aulc(c.column("n_labelled").to_numpy(), c.column("test_acc").to_numpy())
    return {"curves": pa.concat_tables(curves), "selections": pa.concat_tables(picks), "metrics": {"aulc": aulcs}}


def run_batch_study(params: LoopParams, *, train: pa.Table, val: pa.Table, test: pa.Table) -> dict[str, object]:
    """The batch study: every ``batch_study`` selector x seed at every batch size, same label budget
    (:data:`BATCH_CURVE_SCHEMA` / :data:`BATCH_PICKS_SCHEMA`, AULC per run as ``b<size>.<selector>.<seed>``)."""
    budget = params.al.rounds * params.al.batch_size
    curves, picks, aulcs = [], [], {}
    for b in params.batch_study.batch_sizes:
        al = params.al.model_copy(update={"batch_size": b, "rounds": budget // b})
        for sel in params.batch_study.selectors:
            for seed in params.seeds:
                c, p = active_learning(al, sel, seed, train=train, val=val, test=test, options=params.options.get(sel))
                curves.append(pa.table({"batch_size": [b] * c.num_rows, **{k: c.column(k) for k in c.column_names}},
                                       schema=BATCH_CURVE_SCHEMA))
                picks.append(pa.table({"batch_size": [b] * p.num_rows, **{k: p.column(k) for k in p.column_names}},
                                      schema=BATCH_PICKS_SCHEMA))
                aulcs[f"b{b}.{sel}.{seed}"] = aulc(c.column("n_labelled").to_numpy(), c.column("test_acc").to_numpy())
    return {"curves": pa.concat_tables(curves), "selections": pa.concat_tables(picks), "metrics": {"aulc": aulcs}}


def _aulc_by(curves: dict[str, pa.Table]) -> dict[str, dict[tuple[str, int], float]]:
    """``{selector: {(dataset, seed): AULC}}``."""
    out: dict[str, dict[tuple[str, int], float]] = {}
    for ds, t in curves.items():
        rows = t.to_pylist()
        for sel in sorted({r["selector"] for r in rows}):
            for seed in sorted({r["seed"] for r in rows if r["selector"] == sel}):
                pts = sorted((r["n_labelled"], r["test_acc"]) for r in rows if r["selector"] == sel and r["seed"] == seed)
                n, a = zip(*pts)
                out.setdefault(sel, {})[(ds, seed)] = aulc(np.array(n), np.array(a))
    return out


def _radius_error_spearman(curves: dict[str, pa.Table]) -> dict[tuple[str, int], float]:
    """Per (dataset, seed): mean over rounds >= 1 of Spearman(covering radius, test error) across
    selectors at equal labelled-set size (so set size cannot drive the correlation)."""
    out = {}
    for ds, t in curves.items():
        rows = t.to_pylist()
        for seed in sorted({r["seed"] for r in rows}):
            rhos = []
            for rnd in sorted({r["round"] for r in rows if r["round"] >= 1}):
                at = [r for r in rows if r["seed"] == seed and r["round"] == rnd]
                rad, err = [r["covering_radius"] for r in at], [1 - r["test_acc"] for r in at]
                if len(at) >= 3 and np.ptp(rad) > 0 and np.ptp(err) > 0:
                    rhos.append(stats.spearmanr(rad, err).statistic)
            if rhos:
                out[(ds, seed)] = float(np.mean(rhos))
    return out


def _batch_claim(loop: LoopParams, base: str, batch: dict[str, pa.Table]):
    """Claim 5 and its table: the core-set advantage over ``base`` at the largest vs the smallest batch."""
    from tasks.platform.report import Claim

    sizes = loop.batch_study.batch_sizes
    by_b = {b: _aulc_by({ds: t.filter(pc.equal(t.column("batch_size"), b)) for ds, t in batch.items()})
            for b in sizes}
    base = base if base in by_b[sizes[0]] else next(s for s in UNCERTAINTY if s in by_b[sizes[0]])
    gap = {b: {k: by_b[b]["kcenter"][k] - by_b[b][base][k] for k in by_b[b]["kcenter"]} for b in sizes}
    small, large = sizes[0], sizes[-1]
    grows = paired(gap[large], gap[small])
    at = {b: paired(by_b[b]["kcenter"], by_b[b][base]) for b in sizes}
    vs_random = {b: paired(by_b[b]["kcenter"], by_b[b]["random"]) for b in sizes}
    holds = verdict(at[large], ">") == "reproduced"
    claim = Claim(
        "uncertainty heuristics fail in the batch setting: core-set's advantage over them holds at large query "
        "batches and grows with the batch size",
        f"AULC(k-center) - AULC({base}) at batch {large} minus the same at batch {small} (equal label budget "
        f"{loop.al.rounds * loop.al.batch_size}): {describe(grows, 100, 'pts')}; per batch size, k-center - {base}: "
        + "; ".join(f"b={b}: {describe(at[b], 100, 'pts')}" for b in sizes)
        + "; k-center - random: " + "; ".join(f"b={b}: {describe(vs_random[b], 100, 'pts')}" for b in sizes),
        "reproduced" if holds and verdict(grows, ">") == "reproduced" else "not reproduced",
        f"both paired CIs (over datasets x seeds) above 0: the advantage at batch {large}, and its growth from batch "
        f"{small} to {large} (difference of differences); abstract's 'in batch setting' + round2_candidates §1.2",
        **interval_fields(grows, 100, "pts"),
    )
    rows = [{"batch_size": b, **{c: r[c] for c in ("arm", "seeds", "mean", "ci_lo", "ci_hi")}}
            for b in sizes for r in arm_table({s: {i: v[k] for i, k in enumerate(sorted(v))}
                                               for s, v in by_b[b].items()}).to_pylist()]
    return claim, pa.Table.from_pylist(rows), {str(b): {s: float(np.mean(list(v.values()))) for s, v in by_b[b].items()}
                                               for b in sizes}


def report(params: dict, **inputs: pa.Table) -> dict[str, object]:
    from tasks.platform.report import Claim, Report, report_outputs

    loop: LoopParams = params["loop"]
    rp: ReportParams = params["report"]
    curves = {k.removeprefix("curves_"): v for k, v in inputs.items() if k.startswith("curves_")}
    batch = {k.removeprefix("batch_"): v for k, v in inputs.items() if k.startswith("batch_")}
    by = _aulc_by(curves)
    unc = [s for s in UNCERTAINTY if s in by]
    base = rp.baseline if rp.baseline in by else unc[0]
    claims = []
    # (1) uncertainty heuristics "not effective" in batch setting: AULC(unc) - AULC(random) does not exceed 0
    comps = {s: paired(by[s], by["random"]) for s in unc}
    ineffective = [s for s, c in comps.items() if not c["lo"] > 0]
    c1 = comps[base]
    claims.append(Claim(
        "many active learning heuristics are not effective for CNNs in the batch setting",
        "AULC minus random's, per uncertainty selector (batch " + str(loop.al.batch_size) + "): "
        + "; ".join(f"{s}: {describe(c, 100, 'pts')}" for s, c in comps.items()),
        "reproduced" if len(ineffective) * 2 >= len(comps) else "not reproduced",
        f"an uncertainty heuristic is 'not effective' when the CI of AULC(it) - AULC(random) does not lie above 0; "
        f"reproduced when at least half are ({len(ineffective)}/{len(comps)}: {ineffective}); headline: {base}",
        **interval_fields(c1, 100, "pts"),
    ))
    # (2) the bound in terms of the covering radius: radius tracks error at equal set size
    rho = _radius_error_spearman(curves)
    zero = {k: 0.0 for k in rho}
    c2 = paired(rho, zero) if len(rho) >= 2 else {"diff": float("nan"), "lo": float("nan"), "hi": float("nan"),
                                                  "wins": 0, "n": len(rho)}
    claims.append(Claim(
        "the performance of a selected subset is characterised by the geometry of the data (covering radius)",
        f"Spearman(covering radius of the labelled set on raw inputs, test error) across selectors at equal set "
        f"size, mean over rounds: {describe(c2, 1, '')}",
        verdict(c2, ">") if len(rho) >= 2 else "not testable at this scale",
        "empirical proxy of the theorem (the bound itself is not computed): CI of the mean rank correlation above 0",
        **interval_fields(c2),
    ))
    # (3) core-set beats the baselines
    vs_random, vs_base = paired(by["kcenter"], by["random"]), paired(by["kcenter"], by[base])
    both = verdict(vs_random, ">") == "reproduced" and verdict(vs_base, ">") == "reproduced"
    claims.append(Claim(
        "the core-set approach outperforms existing approaches (random, uncertainty) by a large margin",
        f"AULC(k-center) - AULC(random): {describe(vs_random, 100, 'pts')}; - AULC({base}): {describe(vs_base, 100, 'pts')}",
        "reproduced" if both else "not reproduced",
        "both paired CIs above 0 (over datasets x seeds); 'large margin' is reported, not gated",
        **interval_fields(vs_random, 100, "pts"),
    ))
    if "robust_kcenter" in by:
        c4 = paired(by["robust_kcenter"], by["kcenter"])
        claims.append(Claim(
            "robust k-center (outlier budget) improves on greedy k-center",
            f"AULC(robust) - AULC(greedy): {describe(c4, 100, 'pts')}",
            verdict(c4, ">"), "paired CI above 0; our feasibility oracle is greedy, not the paper's MIP",
            **interval_fields(c4, 100, "pts"),
        ))
    batch_claim, batch_table, batch_means = _batch_claim(loop, base, batch)
    claims.append(batch_claim)
    if "badge" in by:  # EXTENSION: a later baseline (2020) the 2018 paper could not compare with
        kb, br = paired(by["kcenter"], by["badge"]), paired(by["badge"], by["random"])
        claims.append(Claim(
            "(extension, not in the paper) the core-set approach also outperforms BADGE (Ash et al. 2020), a later "
            "batch active-learning baseline",
            f"AULC(k-center) - AULC(BADGE): {describe(kb, 100, 'pts')}; AULC(BADGE) - AULC(random): "
            f"{describe(br, 100, 'pts')}",
            verdict(kb, ">"),
            "paired CI of AULC(k-center) - AULC(BADGE) above 0 (over datasets x seeds); BADGE = k-means++ on "
            "last-layer gradient embeddings (tasks/data_selection/badge.py)",
            **interval_fields(kb, 100, "pts"),
        ))
    arms = arm_table({s: {i: v for i, v in enumerate(vals[k] for k in sorted(vals))} for s, vals in by.items()})
    rows = [r for t in curves.values() for r in t.to_pylist()]
    mean_curve = pa.Table.from_pylist([
        {"selector": s, "n_labelled": n,
         "test_acc": float(np.mean([r["test_acc"] for r in rows if r["selector"] == s and r["n_labelled"] == n])),
         "covering_radius": float(np.mean([r["covering_radius"] for r in rows if r["selector"] == s and r["n_labelled"] == n]))}
        for s in by for n in sorted({r["n_labelled"] for r in rows})])
    rep = Report(
        title="Active Learning for Convolutional Neural Networks: A Core-Set Approach", paper="coreset_al", arxiv="1708.00489",
        summary=(
            f"Pool-based batch active learning on {', '.join(curves)}: {loop.al.init_size} random initial labels, "
            f"{loop.al.rounds} rounds of {loop.al.batch_size} queries, an MLP {list(loop.al.model.hidden)} "
            f"(dropout {loop.al.model.dropout}) retrained from scratch each round; selectors {list(loop.selectors)}; "
            f"{len(loop.seeds)} seeds (the initial set and model seeds are shared by all selectors of a seed). "
            "Score: area under the test-accuracy curve over labelled-set size, normalised (mean accuracy). "
            "k-center runs on the penultimate-layer features of the round's model, BALD on "
            f"{loop.al.mc_samples} MC-dropout passes."
        ),
        claims=claims,
        tables={"AULC per selector (mean over datasets x seeds, 95% CI)": arms,
                "Batch study: AULC per batch size and selector (same label budget, 95% CI)": batch_table,
                "Mean learning curve": mean_curve},
        notes=[
            ("The paper uses CNNs on CIFAR-10/100, Caltech-256 and SVHN with budgets in the thousands; we use an MLP on "
            "digits (8x8) and mnist1d (40-d) with budgets in the hundreds: the project has no CNN in models/, and the "
            "images are too small for one to matter. Magnitudes are not comparable."),
            ("Robust k-center: the paper solves a MIP feasibility problem inside a binary search on the radius; we "
            "replace the MIP with a greedy max-coverage oracle (tasks/data_selection/kcenter.py), so our radius "
            "upper-bounds the MIP's."),
            ("Claim 2 is a theorem; we test its empirical face only: at equal labelled-set size, a selector whose "
            "labelled set has a smaller covering radius (raw inputs) has lower test error."),
            (f"Batch study: {list(loop.batch_study.selectors)} rerun at batch sizes {list(loop.batch_study.batch_sizes)} "
            "with the same label budget and initial set, so the AULCs span the same set sizes. One-at-a-time "
            "querying (batch 1) is not run: a retraining per label is too costly even at this scale."),
            "BADGE (Ash et al. 2020) is a baseline the 2018 paper did not have; its claim row is our extension.",
        ],
    )
    metrics = {"aulc_mean": {s: float(np.mean(list(v.values()))) for s, v in by.items()},
               "batch_study_aulc_mean": batch_means,
               "verdicts": {c.claim[:60]: c.verdict for c in claims}}
    return {**report_outputs(rep), "summary": arms, "metrics": metrics}
