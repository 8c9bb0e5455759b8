"""NaN / inf in an upstream table: the error names the file and the column (probe #65, #66)."""

import math

import numpy as np
import pyarrow as pa
import pytest
from pydantic import BaseModel, ConfigDict

from tasks.platform import artifacts
from tasks.platform.errors import ArtifactError
from tasks.platform.stage import Paper, Stage, run_stage


class P(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def summarise(params, *, results):
    acc = np.asarray(results.column("acc").to_pylist(), dtype=float)
    if not np.isfinite(acc).all():  # what a real aggregate (rliable, IRT, scoring) raises
        raise ValueError(f"values has a non-finite value (NaN/inf) at run {int(np.argmin(np.isfinite(acc)))}, task 0")
    return {"metrics": {"mean": float(acc.mean())}}


def keep_nan(params, *, results):  # a core that tolerates NaN (a CI over one seed is NaN)
    return {"metrics": {"rows": results.num_rows}}


SCHEMA = pa.schema([("seed", pa.int64()), ("acc", pa.float64()), ("x", pa.list_(pa.float32(), 2))])
TOY = Paper(
    name="nan_toy", title="nan toy", arxiv="", params_model=P,
    stages=(
        Stage("evaluate", keep_nan, outputs={"results": "results.parquet"}, schemas={"results": SCHEMA}),
        Stage("report", summarise, inputs={"results": "evaluate.results"}, outputs={"metrics": "metrics.json"}),
        Stage("tolerant", keep_nan, inputs={"results": "evaluate.results"}, outputs={"metrics": "metrics.json"}),
    ),
)


def _table(acc, x=((0.0, 1.0), (2.0, 3.0), (4.0, 5.0))):
    flat = pa.array(np.asarray(x, dtype=np.float32).reshape(-1))
    return pa.Table.from_arrays(
        [pa.array([0, 1, 2], pa.int64()), pa.array(acc, pa.float64()), pa.FixedSizeListArray.from_arrays(flat, 2)],
        schema=SCHEMA,
    )


def test_non_finite_cells_finds_float_and_list_columns():
    t = _table([0.5, math.nan, math.inf], x=((0.0, 1.0), (2.0, math.nan), (4.0, 5.0)))
    assert [(c, r, n) for c, r, n, _ in artifacts.non_finite_cells(t)] == [("acc", 1, 2), ("x", 1, 1)]
    assert artifacts.non_finite_cells(_table([0.1, 0.2, None])) == []  # nulls are not NaN


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_failure_on_nan_input_names_file_and_column(tmp_path, bad):
    path = tmp_path / "results.parquet"
    artifacts.write(path, _table([0.9, bad, 0.8]))
    with pytest.raises(ArtifactError) as e:
        run_stage(TOY, TOY.stage("report"), P(), {"results": path})
    msg = str(e.value)
    assert str(path) in msg and "column 'acc'" in msg and "row 1" in msg, msg
    assert "'report'" in msg and "non-finite" in msg
    assert "column 'x'" not in msg


def test_nan_input_is_fine_for_a_core_that_tolerates_it(tmp_path):
    path = tmp_path / "results.parquet"
    artifacts.write(path, _table([0.9, math.nan, 0.8]))
    assert run_stage(TOY, TOY.stage("tolerant"), P(), {"results": path}).metrics == {"rows": 3.0}


def test_failure_without_non_finite_input_is_not_relabelled(tmp_path):
    path = tmp_path / "results.parquet"
    artifacts.write(path, _table([0.9, 0.7, 0.8]))

    def boom(params, *, results):
        raise RuntimeError("a bug")

    paper = Paper(name="nan_toy2", title="", arxiv="", params_model=P, stages=(
        TOY.stages[0], Stage("report", boom, inputs={"results": "evaluate.results"}, outputs={"metrics": "metrics.json"})))
    with pytest.raises(RuntimeError, match="a bug"):
        run_stage(paper, paper.stage("report"), P(), {"results": path})
