"""Tests for tasks/evaluation/compare.py on tiny hand-built tables."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest
from pydantic import BaseModel

from tasks.evaluation.compare import compare_metrics, compare_predictions, compare_runs


def results(rows: list[tuple[str, int, float, float]]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"model": m, "seed": s, "acc": acc, "loss": loss} for m, s, acc, loss in rows],
        schema=pa.schema([("model", pa.string()), ("seed", pa.int64()),
                          ("acc", pa.float64()), ("loss", pa.float64())]),
    )


def predictions(model: str, seed: int, labels: list[int], preds: list[int]) -> list[dict]:
    return [{"model": model, "seed": seed, "id": i, "label": y, "pred": p, "correct": y == p}
            for i, (y, p) in enumerate(zip(labels, preds))]


PRED_SCHEMA = pa.schema([("model", pa.string()), ("seed", pa.int64()), ("id", pa.int64()),
                         ("label", pa.int64()), ("pred", pa.int64()), ("correct", pa.bool_())])

RUN_A = results([("dense", s, 0.95 + 0.001 * s, 0.20) for s in range(5)]
                + [("pruned", s, 0.90 + 0.001 * s, 0.30 + 0.001 * s) for s in range(5)])
# pruned accuracy drops by 5 points in run B, dense unchanged up to noise
RUN_B = results([("dense", s, 0.95 + 0.001 * ((s + 2) % 5), 0.20) for s in range(5)]
                + [("pruned", s, 0.85 + 0.001 * s, 0.30 + 0.001 * s) for s in range(5)])


def test_metrics_that_moved() -> None:
    table = compare_metrics(RUN_A, RUN_B, reps=500)
    rows = {(r["model"], r["metric"]): r for r in table.to_pylist()}
    assert set(rows) == {("dense", "acc"), ("pruned", "acc"), ("dense", "loss"), ("pruned", "loss")}
    moved = rows[("pruned", "acc")]
    assert moved["diff"] == pytest.approx(-0.05)
    assert moved["diff_hi"] < 0 and moved["moved"] == "down"
    assert rows[("dense", "acc")]["moved"] == ""
    assert rows[("dense", "acc")]["diff"] == pytest.approx(0.0, abs=1e-12)
    assert rows[("pruned", "loss")]["moved"] == ""


def test_single_seed_has_no_ci() -> None:
    a = results([("dense", 0, 0.9, 0.1)])
    b = results([("dense", 0, 0.8, 0.1)])
    row = compare_metrics(a, b, metrics=["acc"]).to_pylist()[0]
    assert row["moved"] == "no CI (<2 seeds)"
    assert math.isnan(row["diff_lo"])
    assert row["diff"] == pytest.approx(-0.1)


def test_negative_and_positive_flips() -> None:
    labels = [0, 1, 2, 3, 4]
    a = pa.Table.from_pylist(predictions("dense", 0, labels, [0, 1, 2, 0, 0]), schema=PRED_SCHEMA)
    b = pa.Table.from_pylist(predictions("dense", 0, labels, [0, 9, 2, 3, 0]), schema=PRED_SCHEMA)
    summary, flips = compare_predictions(a, b)
    s = summary.to_pylist()[0]
    assert (s["n_items"], s["negative_flips"], s["positive_flips"]) == (5, 1, 1)
    assert s["acc_a"] == pytest.approx(0.6) and s["acc_b"] == pytest.approx(0.6)
    assert s["nfr"] == pytest.approx(0.2) and s["pfr"] == pytest.approx(0.2)
    by_kind = {r["kind"]: r for r in flips.to_pylist()}
    assert by_kind["negative"]["id"] == 1 and by_kind["negative"]["pred_b"] == 9
    assert by_kind["positive"]["id"] == 3


def test_compare_runs_and_filters() -> None:
    labels = [0, 1]
    pa_a = pa.Table.from_pylist(predictions("pruned", 0, labels, [0, 1]), schema=PRED_SCHEMA)
    pa_b = pa.Table.from_pylist(predictions("pruned", 0, labels, [1, 1]), schema=PRED_SCHEMA)
    res = compare_runs(RUN_A, RUN_B, pa_a, pa_b, reps=300)
    assert res.moved().num_rows == 1
    assert res.negative_flips().column("id").to_pylist() == [0]
    no_items = compare_runs(RUN_A, RUN_B, reps=300)
    assert no_items.flips.num_rows == 0
    with pytest.raises(ValueError, match="both runs or for neither"):
        compare_runs(RUN_A, RUN_B, pa_a, None)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"missing column\(s\) \['acc'\]"):
        compare_metrics(RUN_A, RUN_B.drop_columns(["acc"]), metrics=["acc"])
    dup = results([("dense", 0, 0.9, 0.1), ("dense", 0, 0.8, 0.1)])
    with pytest.raises(ValueError, match="duplicate row"):
        compare_metrics(dup, dup)
    a = pa.Table.from_pylist(predictions("dense", 0, [0], [0]), schema=PRED_SCHEMA)
    b = pa.Table.from_pylist(predictions("other", 0, [0], [0]), schema=PRED_SCHEMA)
    with pytest.raises(ValueError, match="share no"):
        compare_predictions(a, b)
    relabelled = pa.Table.from_pylist(predictions("dense", 0, [1], [0]), schema=PRED_SCHEMA)
    with pytest.raises(ValueError, match="label 0 in run A but 1 in run B"):
        compare_predictions(a, relabelled)


def _write_run(root, acc_shift: float, flip: bool) -> None:
    from tasks.platform.artifacts import write

    d = root / "evaluate_digits"
    rows = [("dense", s, 0.95 + 0.002 * s + acc_shift, 0.2) for s in range(3)]
    write(d / "results.parquet", results(rows))
    preds = []
    for s in range(3):
        preds += predictions("dense", s, [0, 1, 2], [0, 1, 0 if (flip and s == 0) else 2])
    write(d / "predictions.parquet", pa.Table.from_pylist(preds, schema=PRED_SCHEMA))


def test_cli_compare(tmp_path, capsys) -> None:
    from tasks.__main__ import main

    _write_run(tmp_path / "a", 0.0, flip=False)
    _write_run(tmp_path / "b", -0.05, flip=True)
    out = tmp_path / "cmp.md"
    rc = main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--reps", "300",
               "--out", str(out), "--fail-on-change"])
    text = capsys.readouterr().out
    assert rc == 1
    assert "Run comparison [evaluate_digits]" in text
    assert "Metrics that moved beyond their 95% CI (1 of 2)" in text
    assert "Negative flips (right in" in text and ": 1" in text
    assert out.read_text() == text
    # unchanged runs pass
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "a"), "--reps", "300",
                 "--fail-on-change"]) == 0
    capsys.readouterr()
    main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--reps", "300", "--metrics", "loss"])
    assert "(0 of 1)" in capsys.readouterr().out


def test_cli_compare_bad_dirs(tmp_path, capsys) -> None:
    from tasks.__main__ import main

    (tmp_path / "empty").mkdir()
    _write_run(tmp_path / "a", 0.0, flip=False)
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "missing")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "empty")]) == 2
    assert "no results.parquet at the same relative path" in capsys.readouterr().err


class _Params(BaseModel):
    x: int = 1


# ---- runs named as users know them: MLflow run ids, Prefect flow-run names, <paper>@latest ----
@pytest.fixture(scope="module")
def _template_db(tmp_path_factory):
    from tasks.platform import tracking

    path = tmp_path_factory.mktemp("mlflow") / "template.db"
    tracking.ensure_store(f"sqlite:///{path}")
    return path


def _tracked_run(tmp_path, monkeypatch, flow_run_name: str, key: str, acc_shift: float, flip: bool) -> str:
    """One pipeline run as the flow records it: a store dir for evaluate_digits + MLflow runs."""
    from tasks.platform import artifacts, tracking
    from tasks.platform.stage import MANIFEST, StageResult, store_root

    d = store_root() / "toy" / "evaluate_digits" / key[:24]
    _write_run(tmp_path / "src" / key, acc_shift, flip)
    outs = {}
    for name in ("results", "predictions"):
        data = (tmp_path / "src" / key / "evaluate_digits" / f"{name}.parquet").read_bytes()
        artifacts.atomic_write_bytes(d / f"{name}.parquet", data)
        outs[name] = {"path": str(d / f"{name}.parquet"), "sha256": artifacts.sha256_bytes(data)}
    res = StageResult("toy", "evaluate_digits", key, outs, {}, "ph", {}, 1.0)
    artifacts.write(d / MANIFEST, res.to_json())
    monkeypatch.setattr(tracking, "prefect_flow_run", lambda: {"id": f"id-{flow_run_name}", "name": flow_run_name})
    tr = tracking.Tracker("toy", "smoke", "prefect")
    rid = tr.start(_Params())
    tr.log_stage(res, None, cached=False)
    tr.finish()
    return rid


def test_cli_compare_by_mlflow_run_id_flow_run_name_and_paper_at(tmp_path, monkeypatch, capsys, _template_db) -> None:
    import shutil

    from tasks.__main__ import main
    from tasks.platform.stage import store_root

    shutil.copy(_template_db, tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("REPROLAB_MLARTIFACTS", str(tmp_path / "mlartifacts"))
    monkeypatch.setenv("REPROLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REPROLAB_MLFLOW", "1")
    run_a = _tracked_run(tmp_path, monkeypatch, "last-night", "a" * 64, 0.0, flip=False)
    run_b = _tracked_run(tmp_path, monkeypatch, "tonight", "b" * 64, -0.05, flip=True)

    def compare(a: str, b: str) -> str:
        assert main(["compare", a, b, "--reps", "300", "--fail-on-change"]) == 1
        return capsys.readouterr().out

    by_id = compare(run_a, run_b)
    assert "Run comparison [evaluate_digits]: toy-smoke-last-night" in by_id
    assert "Metrics that moved beyond their 95% CI (1 of 2)" in by_id and "Negative flips" in by_id
    assert compare("last-night", "tonight") == by_id  # Prefect flow-run names
    assert compare("toy@previous", "toy@latest") == by_id
    # the store was cleaned: the files come from the MLflow artifacts of the computing runs
    shutil.rmtree(store_root())
    assert compare(run_a, "tonight") == by_id

    assert main(["compare", run_a, "no-such-run"]) == 2
    assert "run 'no-such-run' not found" in capsys.readouterr().err
    assert main(["compare", "toy@previous", "toy@7"]) == 2
    assert "toy has 2 finished run(s)" in capsys.readouterr().err
