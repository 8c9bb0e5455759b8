"""Seed-aware statistics shared by every paper's report stage.

Table-level wrappers around `tasks.evaluation.rliable` (Agarwal et al. 2021) and
`tasks.evaluation.irt` (2PL item response theory), so a paper's report asks questions such as
"accuracy of each model with a 95 % CI over seeds", "IQM over seeds x datasets", "P(dense >
pruned)" or "which test items separate these models" in one call. This module is also the one
owner of the steps every report repeats: the mean over seeds with its bootstrap CI
(:func:`mean_ci`), the paired difference of two arms (:func:`paired`), its sentence
(:func:`describe`) and its verdict (:func:`verdict`).

Input tables (written by the evaluate stages):
    results: one row per (model, seed): string key columns (``model``, ...), int ``seed``,
        float metric columns (``acc``, ``loss``, ...).
    predictions: ``model`` (string), ``seed`` (int), ``id`` (int, test item), ``correct`` (bool).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import torch

from tasks.evaluation import rliable
from tasks.evaluation.irt import IRTFit, fit_2pl, item_separation
from tasks.evaluation.rliable import bootstrap_ci, paired_difference
from tasks.platform.errors import ReprolabError

if TYPE_CHECKING:
    from tasks.platform.report import Claim

__all__ = [
    "aggregate_table",
    "arm_table",
    "ci_text",
    "claims_metrics",
    "comparison_table",
    "describe",
    "direction",
    "interval_fields",
    "irt_tables",
    "mean_ci",
    "paired",
    "per_seed",
    "plot_irt_items",
    "poi_table",
    "require_columns",
    "score_matrices",
    "seed_intervals",
    "summary_metrics",
    "values_by_key",
    "verdict",
]

INTERVAL_TAIL = [("metric", pa.string()), ("n_seeds", pa.int64()), ("mean", pa.float64()),
                 ("lo", pa.float64()), ("hi", pa.float64())]


def require_columns(table: pa.Table, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ReprolabError(f"{what} is missing column(s) {missing}; has {table.column_names}")


def values_by_key(table: pa.Table, keys: Sequence[str], seed_col: str, metric: str) -> dict[tuple, dict]:
    """(key values) -> {seed: value}, rejecting duplicate (key, seed) rows."""
    cols = {c: table.column(c).to_pylist() for c in (*keys, seed_col, metric)}
    out: dict[tuple, dict] = {}
    for i in range(table.num_rows):
        k = tuple(cols[c][i] for c in keys)
        s = cols[seed_col][i]
        if s in out.setdefault(k, {}):
            raise ReprolabError(f"duplicate row for {dict(zip(keys, k))}, {seed_col}={s}")
        out[k][s] = cols[metric][i]
    return out


def seed_intervals(
    results: pa.Table,
    keys: Sequence[str] = ("model",),
    metrics: Sequence[str] = ("acc",),
    seed_col: str = "seed",
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> pa.Table:
    """Mean over seeds with a (1 - alpha) bootstrap CI, per key and metric.

    Returns:
        Table: key columns, ``metric``, ``n_seeds``, ``mean``, ``lo``, ``hi`` (lo = hi = NaN
        when a key has a single seed).
    """
    require_columns(results, [*keys, *metrics, seed_col], "results")
    rows = []
    for metric in metrics:
        for k, by_seed in sorted(values_by_key(results, keys, seed_col, metric).items(), key=str):
            values = [by_seed[s] for s in sorted(by_seed)]
            point, lo, hi = mean_ci(values, reps, alpha, seed)
            rows.append({**dict(zip(keys, k)), "metric": metric, "n_seeds": len(values),
                         "mean": point, "lo": lo, "hi": hi})
    schema = pa.schema([results.schema.field(k) for k in keys] + INTERVAL_TAIL)
    return pa.Table.from_pylist(rows, schema=schema)


def score_matrices(
    results_by_task: Mapping[str, pa.Table],
    metric: str = "acc",
    key: str = "model",
    seed_col: str = "seed",
) -> dict[str, np.ndarray]:
    """Per model, the (seeds x tasks) score array rliable's aggregates expect.

    Args:
        results_by_task: task (e.g. dataset) name -> results table of that task.
        metric: the score column.
        key: the column naming a model.

    Returns:
        model -> (R, T) float array, rows ordered by seed, columns in ``results_by_task`` order.
        Only models present in every task are kept; each needs the same number of seeds in
        every task.
    """
    if not results_by_task:
        raise ReprolabError("results_by_task is empty")
    per_task = {}
    for task, table in results_by_task.items():
        require_columns(table, [key, seed_col, metric], f"results of task {task!r}")
        per_task[task] = {k[0]: v for k, v in values_by_key(table, [key], seed_col, metric).items()}
    models = set.intersection(*(set(v) for v in per_task.values()))
    out = {}
    for model in sorted(models):
        columns = [[by_seed[s] for s in sorted(by_seed)] for by_seed in
                   (per_task[t][model] for t in results_by_task)]
        if len({len(c) for c in columns}) != 1:
            raise ReprolabError(f"model {model!r} has different seed counts per task: "
                             f"{dict(zip(results_by_task, map(len, columns)))}")
        out[model] = np.array(columns, dtype=np.float64).T  # (R, T)
    return out


def aggregate_table(
    score_dict: Mapping[str, np.ndarray],
    metrics: Sequence[str] = ("mean", "median", "iqm"),
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> pa.Table:
    """rliable aggregates with stratified-bootstrap CIs, one row per (model, aggregate)."""
    rows = []
    for name in metrics:
        for model, iv in rliable.interval_estimates(score_dict, name, reps, alpha, seed).items():
            rows.append({"model": model, "aggregate": name, "point": iv.point, "lo": iv.lo, "hi": iv.hi})
    schema = pa.schema([("model", pa.string()), ("aggregate", pa.string()), ("point", pa.float64()),
                        ("lo", pa.float64()), ("hi", pa.float64())])
    return pa.Table.from_pylist(rows, schema=schema)


def irt_tables(
    predictions: pa.Table,
    groups: Mapping[str, Sequence[str]] | None = None,
    model_col: str = "model",
    seed_col: str = "seed",
    item_col: str = "id",
    **fit_kwargs,
) -> tuple[pa.Table, pa.Table, IRTFit]:
    """Fit a 2PL over the (model x seed) x item correctness matrix of ``predictions``.

    Every (model, seed) pair is one respondent. ``groups`` (name -> list of model names)
    adds one separation column per group, ``sep_<name>``: how well each item separates the
    respondents of that group (`tasks.evaluation.irt.item_separation`).

    Returns:
        (respondents, items, fit): respondents has ``model``, ``seed``, ``ability``,
        ``ability_se``, ``accuracy``; items has ``id``, ``p_correct``, ``difficulty``,
        ``difficulty_se``, ``discrimination``, ``discrimination_se``, ``flag`` and the
        separation columns.
    """
    require_columns(predictions, [model_col, seed_col, item_col, "correct"], "predictions")
    models = predictions.column(model_col).to_pylist()
    seeds = predictions.column(seed_col).to_pylist()
    items = predictions.column(item_col).to_pylist()
    correct = predictions.column("correct").to_pylist()
    respondents = sorted(set(zip(models, seeds)), key=str)
    item_ids = sorted(set(items))
    r_index = {r: i for i, r in enumerate(respondents)}
    i_index = {it: j for j, it in enumerate(item_ids)}
    y = np.full((len(respondents), len(item_ids)), -1, dtype=np.int8)  # (respondents, items)
    for m, s, it, ok in zip(models, seeds, items, correct):
        y[r_index[(m, s)], i_index[it]] = int(bool(ok))
    if np.any(y < 0):
        r, j = np.argwhere(y < 0)[0]
        raise ReprolabError(f"predictions lack item {item_col}={item_ids[j]} for "
                         f"{model_col}={respondents[r][0]!r}, {seed_col}={respondents[r][1]}")
    fit = fit_2pl(y, **fit_kwargs)

    resp_table = pa.table({
        model_col: pa.array([r[0] for r in respondents], pa.string()),
        seed_col: pa.array([r[1] for r in respondents], pa.int64()),
        "ability": fit.ability, "ability_se": fit.ability_se,
        "accuracy": y.mean(axis=1).astype(np.float64),
    })
    item_cols = {
        item_col: pa.array(item_ids, pa.int64()),
        "p_correct": y.mean(axis=0).astype(np.float64),
        "difficulty": fit.difficulty, "difficulty_se": fit.difficulty_se,
        "discrimination": fit.discrimination, "discrimination_se": fit.discrimination_se,
        "flag": pa.array(fit.flags.tolist(), pa.string()),
    }
    for name, members in (groups or {}).items():
        idx = [i for i, r in enumerate(respondents) if r[0] in set(members)]
        if len(idx) < 2:
            raise ReprolabError(f"group {name!r} matches {len(idx)} respondent(s); need >= 2 "
                             f"(known models: {sorted(set(models))})")
        item_cols[f"sep_{name}"] = item_separation(fit, idx)
    return resp_table, pa.table(item_cols), fit


def poi_table(
    score_dict: Mapping[str, np.ndarray], reps: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[pa.Table, object]:
    """Pairwise P(row > column) with CIs as a long table, plus the heat-map figure.

    Returns:
        (table with ``x``, ``y``, ``p_x_beats_y``, ``lo``, ``hi``; matplotlib Figure).
    """
    names, point, lo, hi = rliable.poi_matrix(score_dict, reps, alpha, seed)
    rows = [{"x": a, "y": b, "p_x_beats_y": point[i, j], "lo": lo[i, j], "hi": hi[i, j]}
            for i, a in enumerate(names) for j, b in enumerate(names) if i != j]
    schema = pa.schema([("x", pa.string()), ("y", pa.string()), ("p_x_beats_y", pa.float64()),
                        ("lo", pa.float64()), ("hi", pa.float64())])
    fig = rliable.plot_probability_of_improvement(names, point, lo, hi)
    return pa.Table.from_pylist(rows, schema=schema), fig


def plot_irt_items(items_by_name: Mapping[str, pa.Table], separation: str | None = None):
    """Item difficulty vs discrimination, one panel per `irt_tables` items table.

    Colour is the ``separation`` column when given; flagged items are drawn as red crosses.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5 * len(items_by_name), 4))
    for k, (name, items) in enumerate(items_by_name.items()):
        ax = fig.add_subplot(1, len(items_by_name), k + 1)
        b = np.asarray(items.column("difficulty"))
        a = np.asarray(items.column("discrimination"))
        flagged = np.array([f != "" for f in items.column("flag").to_pylist()], dtype=bool)
        colour = np.asarray(items.column(separation))[~flagged] if separation else None
        sc = ax.scatter(b[~flagged], a[~flagged], s=12, c=colour, cmap="viridis", vmin=0, vmax=1,
                        label="items")
        if flagged.any():
            ax.scatter(b[flagged], a[flagged], s=14, marker="x", color="tab:red",
                       label=f"flagged ({int(flagged.sum())})")
        if separation:
            fig.colorbar(sc, ax=ax, label=separation)
        ax.set_xlabel("difficulty b")
        ax.set_ylabel("discrimination a")
        ax.set_title(f"{name}: 2PL item parameters ({items.num_rows} items)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------
# One owner for each step every report repeats: the mean over seeds with its bootstrap CI,
# the paired difference of two arms, the sentence that states it and the verdict it gives.
# ---------------------------------------------------------------------------------------


def mean_ci(values: Sequence[float], reps: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """(mean, lo, hi): mean over seeds with its (1 - alpha) percentile-bootstrap CI.

    Args:
        values: (R,) per-seed values; with R = 1 the interval is (NaN, NaN).
        reps, alpha, seed: bootstrap settings (:func:`tasks.evaluation.rliable.bootstrap_ci`).
    """
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ReprolabError("mean_ci: no values")
    if v.size < 2:
        return float(v.mean()), float("nan"), float("nan")
    return bootstrap_ci(v, "mean", reps, alpha, seed)


def paired(
    a: Mapping[Any, float], b: Mapping[Any, float], reps: int = 2000, alpha: float = 0.05, min_n: int = 2
) -> dict[str, float]:
    """Mean paired difference ``a[k] - b[k]`` over the common keys (seeds, or (dataset, seed)
    pairs) with its (1 - alpha) bootstrap CI (:func:`tasks.evaluation.rliable.paired_difference`).

    Returns:
        ``diff``, ``lo``, ``hi``, ``wins`` (#keys with a > b) and ``n`` (#common keys).

    Raises:
        ReprolabError: fewer than ``min_n`` common keys (``min_n=0`` allows any number; the
            interval is then NaN below 2 keys).
    """
    keys = sorted(set(a) & set(b))
    if len(keys) < min_n:
        raise ReprolabError(f"paired comparison needs >= {min_n} common seeds, got {keys}")
    return paired_difference(a, b, reps, alpha)


def direction(cmp: Mapping[str, float]) -> str:
    """``a > b`` / ``a < b`` when the CI of ``a - b`` excludes 0, else ``no clear difference``.

    Neutral on purpose: higher accuracy is better, a higher negative-flip rate is worse.
    """
    if cmp["lo"] > 0:
        return "a > b"
    if cmp["hi"] < 0:
        return "a < b"
    return "no clear difference"


def verdict(cmp: Mapping[str, float], side: str, margin: float = 0.0) -> str:
    """``reproduced`` when the whole CI of ``a - b`` lies on ``side`` (``">"`` or ``"<"``) of
    ``margin``, else ``not reproduced`` (also when the CI is NaN: too few seeds to judge)."""
    if side not in (">", "<"):
        raise ValueError(f"verdict side must be '>' or '<', got {side!r}")
    ok = cmp["lo"] > margin if side == ">" else cmp["hi"] < margin
    return "reproduced" if ok else "not reproduced"


def describe(
    cmp: Mapping[str, float], scale: float = 100.0, unit: str = "pts", alpha: float = 0.05, over: str = "seeds"
) -> str:
    """The sentence of a paired difference: ``+1.23 pts [95% CI +0.40, +2.10], a > b on 4/5 seeds``."""
    u = f" {unit}" if unit else ""
    return (
        f"{cmp['diff'] * scale:+.2f}{u} [{100 * (1 - alpha):.0f}% CI {cmp['lo'] * scale:+.2f}, "
        f"{cmp['hi'] * scale:+.2f}], a > b on {int(cmp['wins'])}/{int(cmp['n'])} {over}"
    )


def interval_fields(cmp: Mapping[str, float], scale: float = 1.0, unit: str = "") -> dict[str, Any]:
    """``value`` / ``lo`` / ``hi`` / ``unit`` keyword arguments of a ``Claim`` (no lo/hi when NaN)."""
    if np.isnan(cmp["lo"]):
        return {"value": cmp["diff"] * scale, "unit": unit}
    return {"value": cmp["diff"] * scale, "lo": cmp["lo"] * scale, "hi": cmp["hi"] * scale, "unit": unit}


def arm_table(arm_values: Mapping[str, Mapping[int, float]], labels: Mapping[str, str] | None = None) -> pa.Table:
    """One row per arm: mean and 95 % CI over seeds (``value`` in the metric's unit)."""
    rows = []
    for name, vals in arm_values.items():
        v = [vals[s] for s in sorted(vals)]
        mean, lo, hi = mean_ci(v)
        rows.append(
            {"arm": name, "what": (labels or {}).get(name, ""), "seeds": len(v), "mean": mean, "ci_lo": lo, "ci_hi": hi}
        )
    return pa.Table.from_pylist(rows)


def comparison_table(pairs: Mapping[str, tuple[Mapping[int, float], Mapping[int, float]]]) -> pa.Table:
    """One row per named paired comparison ``a - b`` (``wins``/``n`` as float columns)."""
    rows = []
    for name, (a, b) in pairs.items():
        c = paired(a, b)
        rows.append({"comparison": name, **c, "wins": float(c["wins"]), "n": float(c["n"]), "result": direction(c)})
    return pa.Table.from_pylist(rows)


def per_seed(metrics: Mapping[str, Any], key: str = "test.acc") -> dict[int, float]:
    """``{seed: value}`` of a dotted ``key`` from a distill/train metrics JSON."""
    out = {}
    for seed, m in metrics["seeds"].items():
        cur: Any = m
        for part in key.split("."):
            if not isinstance(cur, Mapping) or part not in cur:
                raise ReprolabError(f"metrics of seed {seed} have no {key!r}")
            cur = cur[part]
        out[int(seed)] = float(cur)
    return out


def summary_metrics(arm_values: Mapping[str, Mapping[int, float]]) -> dict[str, float]:
    """Flat ``{arm.mean: ...}`` numbers for metrics.json (MLflow logs them)."""
    out = {}
    for name, vals in arm_values.items():
        out[f"{name}.mean"] = float(torch.tensor(list(vals.values())).mean())
    return out


def ci_text(r: Mapping[str, float], key: str) -> str:
    """``"0.812 [0.790, 0.834]"`` from a row holding ``key``, ``key_lo`` and ``key_hi``."""
    return f"{r[key]:.3f} [{r[key + '_lo']:.3f}, {r[key + '_hi']:.3f}]"


def claims_metrics(claims: Sequence[Claim], extra: Mapping[str, Any]) -> dict:
    """``n_reproduced`` / ``n_claims`` of a report's claims, plus ``extra`` (its metrics.json)."""
    return {"n_reproduced": sum(c.verdict == "reproduced" for c in claims), "n_claims": len(claims), **extra}
