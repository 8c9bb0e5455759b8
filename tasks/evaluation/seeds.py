"""Seed-aware statistics over evaluation tables, shared by every paper's report stage.

Table-level wrappers around `tasks.methods.rliable` (Agarwal et al. 2021) and
`tasks.methods.irt` (2PL item response theory), so a paper's report asks questions such as
"accuracy of each model with a 95 % CI over seeds", "IQM over seeds x datasets", "P(dense >
pruned)" or "which test items separate these models" in one call.

Input tables (written by the evaluate stages):
    results: one row per (model, seed): string key columns (``model``, ...), int ``seed``,
        float metric columns (``acc``, ``loss``, ...).
    predictions: ``model`` (string), ``seed`` (int), ``id`` (int, test item), ``correct`` (bool).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from tasks.errors import ReprolabError
from tasks.methods import rliable
from tasks.methods.irt import IRTFit, fit_2pl, item_separation

__all__ = [
    "aggregate_table",
    "irt_tables",
    "plot_irt_items",
    "poi_table",
    "require_columns",
    "score_matrices",
    "seed_intervals",
    "values_by_key",
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
            if len(values) >= 2:
                point, lo, hi = rliable.bootstrap_ci(values, "mean", reps, alpha, seed)
            else:
                point, lo, hi = float(values[0]), float("nan"), float("nan")
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
    respondents of that group (`tasks.methods.irt.item_separation`).

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
