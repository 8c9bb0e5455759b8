"""Shared pieces of the multiplicity papers: data sections, prepare stages, seed statistics.

PLATFORM: nothing here is a paper's method; it is the plumbing every multiplicity paper
declares the same way (one ``prepare_<dataset>`` stage per dataset, seed-level CIs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, model_validator

from tasks.data_prep import DataParams, prepare, split_schema_check
from tasks.platform.errors import ReprolabError
from tasks.evaluation.rliable import bootstrap_ci, paired_difference
from tasks.platform.stage import Stage

SPLITS = {"train": "train.parquet", "val": "val.parquet", "test": "test.parquet"}


class MultiData(BaseModel):
    """One data section per dataset. The ``val`` split is the *reference* split: epsilon
    sets, temperature fits and model selection use it; the ``test`` split only scores."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    digits: DataParams = DataParams(dataset="digits")
    mnist1d: DataParams = DataParams(dataset="mnist1d", num_samples=4000)
    breast_cancer: DataParams = DataParams(dataset="breast_cancer")

    @model_validator(mode="after")
    def _names(self):
        for name in type(self).model_fields:
            if getattr(self, name).dataset != name:
                raise ValueError(f"data.{name}.dataset must be {name!r}, got {getattr(self, name).dataset!r}")
        return self


def prepare_stage(ds: str) -> Stage:
    """``prepare_<ds>``: the shared data-prep core on section ``data.<ds>``."""
    return Stage(
        f"prepare_{ds}", prepare, params=(f"data.{ds}",), outputs=SPLITS,
        schemas={k: split_schema_check for k in SPLITS},
    )


def split_inputs(ds: str, splits: Sequence[str] = ("train", "val", "test")) -> dict[str, str]:
    return {s: f"prepare_{ds}.{s}" for s in splits}


def mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, lo, hi) 95% percentile bootstrap over seeds; needs >= 2 finite values."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if v.size < 2:
        raise ReprolabError(f"a seed CI needs >= 2 finite values, got {v.tolist()}")
    return bootstrap_ci(v, "mean", reps=2000, alpha=0.05, seed=0)


def paired(a: Mapping[object, float], b: Mapping[object, float]) -> dict[str, float]:
    """Mean of ``a[k] - b[k]`` over common keys with its 95% bootstrap CI (rliable)."""
    c = paired_difference(a, b)
    return {k: float(v) for k, v in c.items()}


def ci_text(c: Mapping[str, float], scale: float = 1.0, unit: str = "") -> str:
    u = f" {unit}" if unit else ""
    return (f"{c['diff'] * scale:+.4g}{u} [95% CI {c['lo'] * scale:+.4g}, {c['hi'] * scale:+.4g}], "
            f"a > b on {int(c['wins'])}/{int(c['n'])}")


def rows_table(rows: list[dict]) -> pa.Table:
    """A table from row dicts (one schema; float columns stay float64 even when NaN)."""
    if not rows:
        raise ReprolabError("no rows to tabulate")
    return pa.Table.from_pylist(rows)
