"""Tests for tasks/evaluation/seeds.py on tiny hand-built tables."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from scipy.special import expit

from tasks.evaluation.seeds import aggregate_table, irt_tables, score_matrices, seed_intervals


def results(rows: list[tuple[str, int, float]]) -> pa.Table:
    return pa.Table.from_pylist([{"model": m, "seed": s, "acc": a} for m, s, a in rows],
                                schema=pa.schema([("model", pa.string()), ("seed", pa.int64()),
                                                  ("acc", pa.float64())]))


def test_seed_intervals() -> None:
    t = results([("dense", 0, 0.90), ("dense", 1, 0.92), ("dense", 2, 0.94), ("solo", 0, 0.5)])
    rows = {r["model"]: r for r in seed_intervals(t, reps=500).to_pylist()}
    assert rows["dense"]["mean"] == pytest.approx(0.92)
    assert 0.90 <= rows["dense"]["lo"] < 0.92 < rows["dense"]["hi"] <= 0.94
    assert rows["dense"]["n_seeds"] == 3
    assert rows["solo"]["n_seeds"] == 1 and math.isnan(rows["solo"]["lo"])
    with pytest.raises(ValueError, match="missing column"):
        seed_intervals(t, metrics=["loss"])


def test_score_matrices_and_aggregates() -> None:
    digits = results([("dense", s, 0.9 + 0.01 * s) for s in range(3)] + [("pruned", 0, 0.5)])
    mnist = results([("dense", s, 0.6 + 0.01 * s) for s in range(3)])
    mats = score_matrices({"digits": digits, "mnist1d": mnist})
    assert list(mats) == ["dense"]  # pruned is missing from mnist1d
    np.testing.assert_allclose(mats["dense"], [[0.9, 0.6], [0.91, 0.61], [0.92, 0.62]])
    agg = {(r["model"], r["aggregate"]): r for r in aggregate_table(mats, reps=300).to_pylist()}
    assert agg[("dense", "mean")]["point"] == pytest.approx(0.76)
    assert agg[("dense", "iqm")]["lo"] <= agg[("dense", "iqm")]["point"] <= agg[("dense", "iqm")]["hi"]
    uneven = results([("dense", 0, 0.6)])
    with pytest.raises(ValueError, match="different seed counts"):
        score_matrices({"digits": digits, "mnist1d": uneven})


def _predictions(abilities: dict[str, list[float]], n_items: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    b = np.linspace(-2.5, 2.5, n_items)
    rows = []
    for model, thetas in abilities.items():
        for s, theta in enumerate(thetas):
            ok = rng.uniform(size=n_items) < expit(1.5 * (theta - b))
            rows += [{"model": model, "seed": s, "id": j, "correct": bool(c)} for j, c in enumerate(ok)]
    return pa.Table.from_pylist(rows)


def test_irt_tables_orders_models_and_flags() -> None:
    preds = _predictions({"dense": [1.5, 1.4, 1.6], "pruned": [-0.5, -0.4, -0.6]}, 120, 0)
    resp, items, fit = irt_tables(preds, groups={"dense_vs_pruned": ["dense", "pruned"]})
    assert resp.num_rows == 6 and items.num_rows == 120
    ability = dict(zip(zip(resp.column("model").to_pylist(), resp.column("seed").to_pylist()),
                       resp.column("ability").to_pylist()))
    assert min(ability[("dense", s)] for s in range(3)) > max(ability[("pruned", s)] for s in range(3))
    sep = np.array(items.column("sep_dense_vs_pruned"))
    difficulty = np.array(items.column("difficulty"))
    # the separating items lie between the two groups' abilities, not at the extremes
    top = np.argsort(sep)[-10:]
    assert np.all(np.abs(difficulty[top]) < np.abs(difficulty).max())
    assert set(items.column("flag").to_pylist()) <= {"", "constant", "low_discrimination",
                                                     "negative_correlation"}


def test_irt_tables_errors() -> None:
    preds = _predictions({"dense": [1.0], "pruned": [0.0]}, 5, 1)
    with pytest.raises(ValueError, match="lack item id=4"):
        irt_tables(preds.slice(0, preds.num_rows - 1))
    with pytest.raises(ValueError, match="group 'g' matches 1"):
        irt_tables(preds, groups={"g": ["dense"]})


def test_poi_table_and_irt_plot() -> None:
    from matplotlib.figure import Figure

    from tasks.evaluation.seeds import plot_irt_items, poi_table

    mats = {"dense": np.array([[0.9, 0.8], [0.91, 0.82]]), "pruned": np.array([[0.7, 0.6], [0.72, 0.61]])}
    table, fig = poi_table(mats, reps=200)
    rows = {(r["x"], r["y"]): r for r in table.to_pylist()}
    assert rows[("dense", "pruned")]["p_x_beats_y"] == 1.0
    assert rows[("pruned", "dense")]["p_x_beats_y"] == 0.0
    assert isinstance(fig, Figure)
    preds = _predictions({"dense": [1.0, 1.2], "pruned": [-1.0, -0.8]}, 30, 2)
    _, items, _ = irt_tables(preds, groups={"all": ["dense", "pruned"]})
    fig = plot_irt_items({"a": items, "b": items}, "sep_all")
    assert isinstance(fig, Figure) and len(fig.axes) == 4  # 2 panels + 2 colour bars


def test_nm_sparsity_seed_statistics() -> None:
    """The nm_sparsity report's use of these statistics, on hand-built evaluation tables."""
    from tasks.papers.nm_sparsity import ReportParams, seed_statistics
    from tasks.sparsity.nm import PruneParams

    models = {"dense": 1.5, "pruned/2:4_v1": -0.5, "finetuned/2:4_v1": 0.5}
    tables, preds = {}, {}
    for k, ds in enumerate(("digits", "mnist1d")):
        tables[ds] = results([(m, s, 0.6 + 0.1 * t + 0.01 * s) for m, t in models.items() for s in range(3)])
        preds[ds] = _predictions({m: [t] * 3 for m, t in models.items()}, 40, k)
    out = seed_statistics(tables, preds, ReportParams(reps=200), PruneParams(patterns=("2:4",)))
    poi = {(r["x"], r["y"]): r["p_x_beats_y"] for r in out["poi"].to_pylist()}
    assert poi[("dense", "pruned/2:4_v1")] == 1.0
    iqm = {r["model"]: r["point"] for r in out["aggregates"].to_pylist() if r["aggregate"] == "iqm"}
    assert iqm["dense"] > iqm["finetuned/2:4_v1"] > iqm["pruned/2:4_v1"]
    assert out["irt_summary"].column("items").to_pylist() == [40, 40]
    ability = {(r["dataset"], r["model"]): r["ability"] for r in out["abilities"].to_pylist()}
    assert ability[("digits", "dense")] > ability[("digits", "pruned/2:4_v1")]
    assert out["items"].num_rows == 80
