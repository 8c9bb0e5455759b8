"""Compare two runs of a pipeline (e.g. last night's retrain against the previous one).

Two questions, answered from the evaluation artifacts of each run:

1. Which metrics moved beyond their confidence interval? For every key (e.g. ``model``) and
   metric column, the per-seed values of run A and run B are bootstrapped independently and
   the 95 % CI of ``mean(B) - mean(A)`` is reported; a metric *moved* when that interval
   excludes 0 (Agarwal et al. 2021's interval-estimate reading, `tasks.evaluation.rliable`).
2. Which test items flipped? Joining item-level predictions on (key, seed, item id), a
   *negative flip* is an item run A got right and run B gets wrong; a positive flip the
   reverse. NFR = negative flips / matched items (Yan et al. 2021, "Positive-congruent
   training"; the churn/NFR definitions in ../shared/research/anchors_audit_eval.md §3.4).

A run is named as users know it: an MLflow run id, a Prefect flow-run name, ``<paper>@latest``
/ ``<paper>@previous``, or a directory (:func:`resolve_run`).

Inputs are the tables the evaluate stages write:
    results: one row per (model, seed) with string key columns (``model``, ``stage``, ...),
        an int ``seed`` column and float metric columns (``acc``, ``loss``, ...).
    predictions: ``tasks.train.PREDICTIONS_SCHEMA``: ``model``, ``seed``, ``id``, ``label``,
        ``pred``, ``correct`` (bool) [, ``p_true``].
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from tasks.evaluation.seeds import require_columns, values_by_key
from tasks.platform.errors import ReprolabError
from tasks.evaluation.rliable import difference_ci

__all__ = ["CompareResult", "compare_metrics", "compare_predictions", "compare_runs"]

METRICS_SCHEMA_TAIL = [
    ("metric", pa.string()),
    ("n_seeds_a", pa.int64()),
    ("n_seeds_b", pa.int64()),
    ("mean_a", pa.float64()),
    ("mean_b", pa.float64()),
    ("diff", pa.float64()),  # mean_b - mean_a
    ("diff_lo", pa.float64()),  # NaN when a run has < 2 seeds
    ("diff_hi", pa.float64()),
    ("moved", pa.string()),  # "up" | "down" | "" | "no CI (<2 seeds)"
]


@dataclass(frozen=True)
class CompareResult:
    """Output of `compare_runs`.

    Attributes:
        metrics: one row per (key..., metric): means, difference and its CI, ``moved``.
        flip_summary: one row per (key..., seed): matched items, accuracies, flip counts, NFR.
        flips: one row per flipped item: key..., seed, id, label, pred_a, pred_b, kind.
    """

    metrics: pa.Table
    flip_summary: pa.Table
    flips: pa.Table

    def moved(self) -> pa.Table:
        """Only the metrics that moved beyond their CI."""
        mask = [m in ("up", "down") for m in self.metrics.column("moved").to_pylist()]
        return self.metrics.filter(pa.array(mask, pa.bool_()))

    def negative_flips(self) -> pa.Table:
        mask = [k == "negative" for k in self.flips.column("kind").to_pylist()]
        return self.flips.filter(pa.array(mask, pa.bool_()))

    def to_markdown(self, name_a: str = "A", name_b: str = "B", max_items: int = 50) -> str:
        """Human-readable summary (the CLI prints this)."""
        from tasks.platform.report import table_markdown

        moved = self.moved()
        neg = self.negative_flips()
        out = [f"# Run comparison: {name_a} -> {name_b}", ""]
        out += [f"## Metrics that moved beyond their 95% CI ({moved.num_rows} of "
                f"{self.metrics.num_rows})", ""]
        out += [table_markdown(moved) if moved.num_rows else "None.", ""]
        out += ["## All metrics", "", table_markdown(self.metrics), ""]
        out += ["## Item flips per model and seed", "", table_markdown(self.flip_summary), ""]
        out += [f"## Negative flips (right in {name_a}, wrong in {name_b}): {neg.num_rows}", ""]
        if neg.num_rows:
            out += [table_markdown(neg.slice(0, max_items)), ""]
            if neg.num_rows > max_items:
                out += [f"... and {neg.num_rows - max_items} more.", ""]
        return "\n".join(out).rstrip() + "\n"


def _key_columns(table: pa.Table, exclude: Sequence[str]) -> list[str]:
    return [f.name for f in table.schema
            if f.name not in exclude and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))]


def _metric_columns(table: pa.Table, exclude: Sequence[str]) -> list[str]:
    return [f.name for f in table.schema if f.name not in exclude and pa.types.is_floating(f.type)]


# ---- metrics --------------------------------------------------------------------------------
def compare_metrics(
    a: pa.Table,
    b: pa.Table,
    keys: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    seed_col: str = "seed",
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> pa.Table:
    """Per key and metric: mean over seeds in A and B, and the bootstrap CI of B - A.

    Args:
        a, b: results tables (one row per key x seed).
        keys: columns identifying a model (default: every string column of ``a``).
        metrics: metric columns (default: every float column of ``a`` except keys/seed).
        seed_col: the seed column.
        reps, alpha, seed: bootstrap settings (`tasks.evaluation.rliable.difference_ci`).

    Returns:
        Table with the key columns followed by ``METRICS_SCHEMA_TAIL``.
    """
    require_columns(a, [seed_col], "run A results")
    require_columns(b, [seed_col], "run B results")
    keys = list(keys) if keys is not None else _key_columns(a, [seed_col])
    metrics = list(metrics) if metrics is not None else _metric_columns(a, [*keys, seed_col])
    if not metrics:
        raise ReprolabError("no metric columns to compare (no float columns in run A results)")
    require_columns(a, [*keys, *metrics], "run A results")
    require_columns(b, [*keys, *metrics], "run B results")

    rows = []
    for metric in metrics:
        ga, gb = values_by_key(a, keys, seed_col, metric), values_by_key(b, keys, seed_col, metric)
        for k in sorted(set(ga) & set(gb), key=str):
            va = np.array(list(ga[k].values()), dtype=np.float64)
            vb = np.array(list(gb[k].values()), dtype=np.float64)
            if not (np.all(np.isfinite(va)) and np.all(np.isfinite(vb))):
                raise ReprolabError(f"non-finite {metric!r} for {dict(zip(keys, k))}")
            row = dict(zip(keys, k))
            row.update(metric=metric, n_seeds_a=len(va), n_seeds_b=len(vb),
                       mean_a=float(va.mean()), mean_b=float(vb.mean()),
                       diff=float(vb.mean() - va.mean()))
            if len(va) >= 2 and len(vb) >= 2:
                iv = difference_ci(va, vb, "mean", reps=reps, alpha=alpha, seed=seed)
                moved = "up" if iv.lo > 0 else "down" if iv.hi < 0 else ""
                row.update(diff_lo=iv.lo, diff_hi=iv.hi, moved=moved)
            else:
                row.update(diff_lo=float("nan"), diff_hi=float("nan"), moved="no CI (<2 seeds)")
            rows.append(row)
    schema = pa.schema([pa.field(k, a.schema.field(k).type) for k in keys] + METRICS_SCHEMA_TAIL)
    return pa.Table.from_pylist(rows, schema=schema)


# ---- item flips -----------------------------------------------------------------------------
FLIPS_TAIL = [("label", pa.int64()), ("pred_a", pa.int64()), ("pred_b", pa.int64()),
              ("kind", pa.string())]  # after the key columns and the item id column
SUMMARY_TAIL = [("n_items", pa.int64()), ("acc_a", pa.float64()), ("acc_b", pa.float64()),
                ("negative_flips", pa.int64()), ("positive_flips", pa.int64()),
                ("nfr", pa.float64()), ("pfr", pa.float64()), ("unmatched", pa.int64())]


def compare_predictions(
    a: pa.Table, b: pa.Table, keys: Sequence[str] = ("model", "seed"), item: str = "id"
) -> tuple[pa.Table, pa.Table]:
    """Item flips between two runs' item-level predictions.

    Args:
        a, b: prediction tables with ``keys``, ``item``, ``label``, ``pred``, ``correct``.
        keys: columns that identify the model instance (default: model and seed).
        item: the test-item id column.

    Returns:
        (summary, flips): summary has one row per key with counts, NFR (= negative flips /
        matched items) and PFR; flips lists each flipped item with ``kind`` "negative"
        (right in A, wrong in B) or "positive".
    """
    cols = [*keys, item, "label", "pred", "correct"]
    require_columns(a, cols, "run A predictions")
    require_columns(b, cols, "run B predictions")

    def index(t: pa.Table, what: str) -> dict[tuple, dict[int, tuple[int, int, bool]]]:
        data = {c: t.column(c).to_pylist() for c in cols}
        out: dict[tuple, dict[int, tuple[int, int, bool]]] = {}
        for i in range(t.num_rows):
            k = tuple(data[c][i] for c in keys)
            it = data[item][i]
            if it in out.setdefault(k, {}):
                raise ReprolabError(f"{what}: duplicate {item}={it} for {dict(zip(keys, k))}")
            out[k][it] = (data["label"][i], data["pred"][i], bool(data["correct"][i]))
        return out

    ia, ib = index(a, "run A predictions"), index(b, "run B predictions")
    common = sorted(set(ia) & set(ib), key=str)
    if not common:
        raise ReprolabError(f"runs A and B share no {list(keys)} combination to compare")
    summary, flips = [], []
    for k in common:
        shared = sorted(set(ia[k]) & set(ib[k]))
        unmatched = len(set(ia[k]) ^ set(ib[k]))
        if not shared:
            raise ReprolabError(f"no common {item} values for {dict(zip(keys, k))}: different test sets?")
        neg = pos = hits_a = hits_b = 0
        for it in shared:
            (label_a, pred_a, ok_a), (label_b, pred_b, ok_b) = ia[k][it], ib[k][it]
            if label_a != label_b:
                raise ReprolabError(f"{item}={it} has label {label_a} in run A but {label_b} in run B")
            hits_a, hits_b = hits_a + ok_a, hits_b + ok_b
            if ok_a != ok_b:
                kind = "negative" if ok_a else "positive"
                neg, pos = neg + (kind == "negative"), pos + (kind == "positive")
                flips.append({**dict(zip(keys, k)), item: it, "label": label_a,
                              "pred_a": pred_a, "pred_b": pred_b, "kind": kind})
        n = len(shared)
        summary.append({**dict(zip(keys, k)), "n_items": n, "acc_a": hits_a / n, "acc_b": hits_b / n,
                        "negative_flips": neg, "positive_flips": pos, "nfr": neg / n, "pfr": pos / n,
                        "unmatched": unmatched})
    key_fields = [pa.field(k, a.schema.field(k).type) for k in keys]
    flips_schema = pa.schema(key_fields + [pa.field(item, a.schema.field(item).type)] + FLIPS_TAIL)
    return (pa.Table.from_pylist(summary, schema=pa.schema(key_fields + SUMMARY_TAIL)),
            pa.Table.from_pylist(flips, schema=flips_schema))


def compare_runs(
    results_a: pa.Table,
    results_b: pa.Table,
    predictions_a: pa.Table | None = None,
    predictions_b: pa.Table | None = None,
    **metric_kwargs,
) -> CompareResult:
    """`compare_metrics` plus (when both prediction tables are given) `compare_predictions`."""
    metrics = compare_metrics(results_a, results_b, **metric_kwargs)
    if (predictions_a is None) != (predictions_b is None):
        raise ReprolabError("give item-level predictions for both runs or for neither")
    if predictions_a is None:
        empty_keys = [pa.field("model", pa.string()), pa.field("seed", pa.int64())]
        summary = pa.Table.from_pylist([], schema=pa.schema(empty_keys + SUMMARY_TAIL))
        flips = pa.Table.from_pylist(
            [], schema=pa.schema(empty_keys + [pa.field("id", pa.int64())] + FLIPS_TAIL))
    else:
        summary, flips = compare_predictions(predictions_a, predictions_b)
    return CompareResult(metrics=metrics, flip_summary=summary, flips=flips)


# PLATFORM: the command line (`python -m tasks compare RUN_A RUN_B`) --------------------------
RUN_SPEC_HELP = ("a run: an MLflow run id, a Prefect flow-run name or id, <paper>@latest / "
                 "<paper>@previous (the last finished runs of a paper), or a directory "
                 "(e.g. artifacts/<paper> after dvc repro, or a copy of one)")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_PAPER_AT = re.compile(r"^(?P<paper>[A-Za-z0-9_]+)@(?P<which>latest|previous|\d+)$")


def find_pairs(run_a: Path, run_b: Path, results_name: str) -> list[str]:
    """Relative directories holding ``results_name`` in both runs (e.g. ``evaluate_digits``).

    A run directory is ``artifacts/<paper>`` (DVC), a stage directory, a copy of either, or
    the directory :func:`materialise_run` fills from an MLflow run.
    """
    for run in (run_a, run_b):
        if not run.is_dir():
            raise ReprolabError(f"run directory not found: {run}")

    def rel_dirs(root: Path) -> set[str]:
        return {str(p.parent.relative_to(root)) for p in root.rglob(results_name)}

    in_a, in_b = rel_dirs(run_a), rel_dirs(run_b)
    common = sorted(in_a & in_b)
    if not common:
        raise ReprolabError(f"no {results_name} at the same relative path in both runs: "
                         f"{run_a} has {sorted(in_a) or 'none'}, {run_b} has {sorted(in_b) or 'none'}")
    return common


def _mlflow_client(spec: str = ""):
    from tasks.platform import tracking

    what = f"run {spec!r} not found: not a directory, and " if spec else ""
    if not tracking.enabled():
        raise ReprolabError(f"{what}MLflow tracking is off (REPROLAB_MLFLOW=0) to look runs up in")
    db = tracking.sqlite_path(tracking.tracking_uri())
    if db is not None and not db.is_file():
        raise ReprolabError(f"{what}there is no MLflow store at {db} to look it up in (no pipeline ran here yet)")
    tracking.ensure_store()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking.tracking_uri())


def find_mlflow_run(spec: str, client=None):
    """The MLflow run ``spec`` names: a run id, a Prefect flow-run name or id (the parent run's
    ``reprolab.prefect.flow_run_name``/``_id`` tags), or ``<paper>@latest|previous|N`` (the N-th
    most recent finished parent run of that paper). ``ReprolabError`` saying what was tried."""
    from mlflow.exceptions import MlflowException

    client = client or _mlflow_client(spec)
    if _RUN_ID.match(spec):
        try:
            return client.get_run(spec)
        except MlflowException:
            pass
    m = _PAPER_AT.match(spec)
    if m:
        exp = client.get_experiment_by_name(f"reprolab/{m['paper']}")
        runs = [] if exp is None else client.search_runs(
            [exp.experiment_id], "attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"],
            max_results=500)
        parents = [r for r in runs if "reprolab.stage" not in r.data.tags]
        which = m["which"]
        n = {"latest": 0, "previous": 1}[which] if which in ("latest", "previous") else int(which)
        if n >= len(parents):
            raise ReprolabError(f"run {spec!r}: {m['paper']} has {len(parents)} finished run(s) in MLflow")
        return parents[n]
    exps = client.search_experiments(filter_string="name LIKE 'reprolab/%'")
    if exps and "'" not in spec:
        for tag in ("reprolab.prefect.flow_run_name", "reprolab.prefect.flow_run_id"):
            runs = client.search_runs([e.experiment_id for e in exps], f"tags.`{tag}` = '{spec}'",
                                      order_by=["attributes.start_time DESC"], max_results=2)
            if runs:
                return runs[0]
    raise ReprolabError(f"run {spec!r} not found: not a directory, not an MLflow run id, not "
                        "<paper>@latest/@previous, and no MLflow run of a Prefect flow run with that name or id")


def materialise_run(run, dest: Path, names: Sequence[str], client=None) -> Path:
    """Copy the evaluation files (``names``) of an MLflow run's stages into ``dest/<stage>/``.

    Each stage run points at its store directory (``reprolab.paper``/``stage``/``stage_key``),
    used when its manifest still verifies; otherwise the files come from the MLflow artifacts
    of the run that computed the stage. A stage run alone stands for itself; a parent run for
    all of its stages.
    """
    import shutil

    from tasks.platform.stage import _verify_manifest, find_store_dir, store_root

    client = client or _mlflow_client()
    tags = run.data.tags
    stages = [run] if "reprolab.stage" in tags else client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'", max_results=1000)
    found = 0
    for st in stages:
        t = st.data.tags
        if not all(k in t for k in ("reprolab.paper", "reprolab.stage", "reprolab.stage_key")):
            continue
        out = dest / t["reprolab.stage"]
        store = find_store_dir(t["reprolab.paper"], t["reprolab.stage"], t["reprolab.stage_key"])
        if _verify_manifest(store) is not None:
            for name in names:
                if (store / name).is_file():
                    out.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(store / name, out / name)
                    found += name == names[0]
            continue
        origin = st.info.run_id if t.get("reprolab.cached") == "false" else t.get("reprolab.computed_by_run")
        if not origin:
            continue
        logged = {Path(a.path).name for a in client.list_artifacts(origin, "outputs")}
        for name in names:
            if name in logged:
                out.mkdir(parents=True, exist_ok=True)
                got = Path(client.download_artifacts(origin, f"outputs/{name}", str(out)))
                if got != out / name:
                    shutil.move(str(got), out / name)
                found += name == names[0]
    if not found:
        raise ReprolabError(f"MLflow run {run.info.run_id} ({run.info.run_name}) has no stage with "
                            f"{names[0]}, neither in the store ({store_root()}) nor in MLflow's artifacts")
    return dest


def resolve_run(spec: str, workdir: Path, names: Sequence[str]) -> tuple[str, Path]:
    """``(label, directory)`` of a run given as a directory or as :func:`find_mlflow_run` accepts."""
    path = Path(spec)
    if path.is_dir():
        return spec, path
    if "/" in spec or path.exists():
        raise ReprolabError(f"run directory not found: {spec}")
    run = find_mlflow_run(spec)
    label = f"{run.info.run_name} ({run.info.run_id[:12]})"
    return label, materialise_run(run, workdir / run.info.run_id, names)


def compare_dirs(
    run_a: Path, run_b: Path, results_name: str = "results.parquet",
    predictions_name: str = "predictions.parquet", reps: int = 2000,
    metrics: Sequence[str] | None = None,
) -> dict[str, CompareResult]:
    """`compare_runs` for every evaluate directory the two runs share."""
    from tasks.platform.artifacts import read

    out = {}
    for rel in find_pairs(run_a, run_b, results_name):
        da, db = run_a / rel, run_b / rel
        preds = [d / predictions_name for d in (da, db)]
        both = all(p.is_file() for p in preds)
        out[rel] = compare_runs(
            read(da / results_name), read(db / results_name),
            read(preds[0]) if both else None, read(preds[1]) if both else None, reps=reps,
            metrics=metrics,
        )
    return out


def add_cli(subparsers) -> None:
    """Register the ``compare`` subcommand on the ``python -m tasks`` parser."""
    p = subparsers.add_parser(
        "compare", help="compare two runs: metrics that moved beyond their CI, items that flipped",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("run_a", help=f"the earlier run: {RUN_SPEC_HELP}")
    p.add_argument("run_b", help="the later run (same forms)")
    p.add_argument("--results", default="results.parquet", help="per-(model, seed) metrics file name")
    p.add_argument("--predictions", default="predictions.parquet", help="item-level predictions file name")
    p.add_argument("--metrics", help="comma-separated metric columns (default: every float column)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap replicates")
    p.add_argument("--out", type=Path, help="also write the markdown report here (atomically)")
    p.add_argument("--fail-on-change", action="store_true",
                   help="exit 1 when a metric moved beyond its CI or an item flipped right -> wrong")
    p.set_defaults(fn=cli)


def cli(args) -> int:
    """Run the comparison, print markdown, optionally write it; return the exit status."""
    import tempfile

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    with tempfile.TemporaryDirectory(prefix="reprolab-compare-") as work:
        names = (args.results, args.predictions)
        (label_a, dir_a), (label_b, dir_b) = (resolve_run(str(r), Path(work), names)
                                              for r in (args.run_a, args.run_b))
        results = compare_dirs(dir_a, dir_b, args.results, args.predictions, args.reps, metrics)
    parts = []
    for rel, res in results.items():
        md = res.to_markdown(label_a, label_b)
        parts.append(md.replace("# Run comparison:", f"# Run comparison [{rel}]:", 1))
    text = "\n".join(parts)
    print(text, end="")
    if args.out:
        from tasks.platform.artifacts import write

        write(args.out, text)
    changed = any(r.moved().num_rows or r.negative_flips().num_rows for r in results.values())
    return 1 if (args.fail_on_change and changed) else 0
