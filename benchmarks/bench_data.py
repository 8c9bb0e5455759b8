"""Data-selection benchmarks (issue 15): query time per selector vs pool size, and greedy
k-center with the incremental min-distance vector vs recomputing all pool-centre distances.

    python benchmarks/bench_data.py --profile smoke|full [--papers] [--out PATH]

Part 1 (selectors): a synthetic pool (features (n, 64), probs (n, 10), mc_probs (20, n, 10),
labels; 100 labelled ids; budget 100; a 10% clean target set for the target-aware selectors, whose ids
count as labelled for them)
at n = 1k, 4k, 20k (full) or 1k (smoke); median wall seconds of ``select()`` over repeats.
A selector whose views this pool cannot give is listed as skipped; ``robust_kcenter`` is
skipped above 5k (its (n, n) distance matrix).
Part 2 (k-center): pool 4000 x 64, first centre 0, batch 100: ``kcenter_greedy`` (incremental)
vs ``kcenter_greedy_recompute`` (the same distances, recomputed to every centre per pick) vs a
BLAS recompute (sklearn ``pairwise_distances`` to all centres per pick; scikit-activeml 1.0.1
itself updates incrementally: ``benchmarks/bench_data_peers.py`` times it); medians over repeats, measured side by side in one process, the
speed-up ratios and whether each returns the same picks. Goal: >= 5x.
Part 3 (``--papers``): one Prefect flow run per data-selection paper (full profile) and its wall time.
Results: JSON under benchmarks/results/ and an MLflow run in the experiment ``reprolab/bench-data``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

T_START = time.perf_counter()
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness import time_papers, write_json_atomic  # noqa: E402

PAPERS = ("coreset_al", "tacred_noise", "gio", "color_filter", "weak_selection")
PROFILES = {  # profile -> (pool sizes, repeats per size, k-center repeats)
    "smoke": ((1000,), 1, 1),
    "full": ((1000, 4000, 20000), 3, 3),
}
ROBUST_MAX = 5000


def _median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def synthetic_pool(n: int, seed: int = 0):
    import numpy as np

    from tasks.data_selection.selection import Pool

    rng = np.random.default_rng(seed)
    k, d = 10, 64
    centres = rng.normal(scale=3.0, size=(k, d))
    labels = rng.integers(0, k, n)
    x = centres[labels] + rng.normal(size=(n, d))
    probs = rng.dirichlet(np.ones(k) * 0.5, n)
    mc = rng.dirichlet(np.ones(k) * 0.5, (20, n))
    ids = np.arange(n, dtype=np.int64) * 7 + 3
    pool = Pool(ids, {"features": x, "probs": probs, "mc_probs": mc, "labels": labels,
                      # CoLoR-Filter's two model losses and a weak binary surrogate's P(y = 1)
                      "prior_loss": rng.uniform(1, 3, n), "conditional_loss": rng.uniform(1, 3, n),
                      "surrogate_probs": 1 / (1 + np.exp(-x[:, 0] / 3))})
    t = rng.choice(n, size=n // 10, replace=False)
    target = Pool(ids[t], {"features": x[t], "labels": labels[t]})
    labelled = ids[rng.choice(np.setdiff1d(np.arange(n), t), size=100, replace=False)]
    return pool, target, labelled


def bench_selectors(sizes: tuple[int, ...], repeats: int) -> dict:
    import numpy as np

    from tasks.data_selection.selection import get_selector, select, selectors

    out: dict[str, dict] = {}
    for n in sizes:
        pool, target, labelled = synthetic_pool(n)
        for name in selectors():
            entry = get_selector(name)
            missing = [v for v in entry.needs if v not in pool.views] + [v for v in entry.target_needs if v not in target.views]
            row = out.setdefault(name, {})
            if missing:
                row[str(n)] = {"skipped": f"needs views {missing}"}
                continue
            if name == "robust_kcenter" and n > ROBUST_MAX:
                row[str(n)] = {"skipped": f"(n, n) distance matrix above {ROBUST_MAX} points"}
                continue
            # the target (clean) ids are labelled too where a selector reads the target set
            lab = np.union1d(labelled, target.ids) if entry.target_needs else labelled
            sec, sel = _median_time(lambda: select(pool, 100, selector=name, labelled=lab, target=target, seed=0), repeats)
            row[str(n)] = {"median_s": sec, "picked": int(len(sel.ids)), "repeats": repeats}
            print(f"{name:>20} n={n:>6}: {sec * 1e3:9.2f} ms ({len(sel.ids)} picks)", flush=True)
    return out


def bench_kcenter(repeats: int, n: int = 4000, d: int = 64, batch: int = 100) -> dict:
    import numpy as np
    from sklearn.metrics import pairwise_distances

    from tasks.data_selection.kcenter import kcenter_greedy, kcenter_greedy_recompute

    x = np.random.default_rng(1).normal(size=(n, d))
    none = np.zeros(0, dtype=np.int64)

    def blas_recompute():  # the textbook way with BLAS: pairwise_distances to all centres, every pick
        s = [0]
        for _ in range(batch - 1):
            dist = pairwise_distances(x, x[s]).min(axis=1)
            dist[s] = -1.0
            s.append(int(np.argmax(dist)))
        return np.asarray(s)

    t_inc, (inc, _) = _median_time(lambda: kcenter_greedy(x, none, batch, first=0), repeats)
    t_ref, (ref, _) = _median_time(lambda: kcenter_greedy_recompute(x, none, batch, first=0), repeats)
    t_blas, blas = _median_time(blas_recompute, repeats)
    res = {"pool": n, "dim": d, "batch": batch, "repeats": repeats,
           "incremental_s": t_inc, "recompute_s": t_ref, "recompute_blas_s": t_blas,
           "speedup_vs_recompute": t_ref / t_inc, "speedup_vs_recompute_blas": t_blas / t_inc,
           "same_picks_recompute": bool(np.array_equal(inc, ref)), "same_picks_blas": bool(np.array_equal(inc, blas)),
           "goal_speedup": 5.0}
    print(f"k-center {n}x{d}, batch {batch}: incremental {t_inc * 1e3:.1f} ms, recompute {t_ref * 1e3:.1f} ms "
          f"({res['speedup_vs_recompute']:.1f}x), BLAS recompute {t_blas * 1e3:.1f} ms "
          f"({res['speedup_vs_recompute_blas']:.1f}x); same picks: {res['same_picks_recompute']}, "
          f"{res['same_picks_blas']}", flush=True)
    return res


def flat_metrics(out: dict) -> dict[str, float]:
    """The numbers MLflow gets: k-center times and ratios, each selector's median per pool size, flow walls."""
    kc = out["kcenter"]
    metrics = {f"kcenter.{k}": kc[k] for k in kc if k.endswith("_s") or k.startswith("speedup_vs")}
    metrics.update({f"{name}.n{n}.median_s": v["median_s"] for name, per in out["selectors"].items()
                    for n, v in per.items() if "median_s" in v})
    metrics.update({f"{name}.flow_wall_s": v["flow_wall_s"] for name, v in out["papers"].items()})
    metrics["total_wall_s"] = out["total_wall_s"]
    return metrics


def log_mlflow(out: dict, path: Path, metrics: dict[str, float] | None = None, run: str = "bench-data",
               tags: dict[str, str] | None = None) -> None:
    """One MLflow run ``<run>-<profile>`` in ``reprolab/bench-data``: ``metrics`` (default: this
    benchmark's :func:`flat_metrics`), git state + profile + ``tags`` as tags, the JSON as artifact."""
    from tasks.platform import tracking

    if not tracking.enabled():
        return
    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri())
    mlflow.set_experiment("reprolab/bench-data")
    all_tags = {"reprolab.profile": out["profile"], **{f"reprolab.{k}": v for k, v in tracking.git_state().items()},
                **(tags or {})}
    with mlflow.start_run(run_name=f"{run}-{out['profile']}", tags=all_tags):
        mlflow.log_metrics(flat_metrics(out) if metrics is None else metrics)
        mlflow.log_artifact(str(path))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", choices=tuple(PROFILES), default="smoke")
    ap.add_argument("--out", default=None)
    ap.add_argument("--papers", action="store_true", help="also run the data-selection papers' flows (slow)")
    args = ap.parse_args()
    for k, v in {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                 "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1", "OMP_NUM_THREADS": "1"}.items():
        os.environ.setdefault(k, v)
    sizes, repeats, kc_repeats = PROFILES[args.profile]
    load_start = os.getloadavg()[0]
    kcenter = bench_kcenter(kc_repeats)
    sel = bench_selectors(sizes, repeats)
    papers = time_papers(PAPERS, args.profile) if args.papers else {}
    out = {"profile": args.profile, "kcenter": kcenter, "selectors": sel, "papers": papers,
           "total_wall_s": time.perf_counter() - T_START, "cpus": os.cpu_count(), "machine": platform.machine(),
           "load_avg_1m_at_start": load_start, "load_avg_1m_at_end": os.getloadavg()[0]}
    path = Path(args.out or ROOT / f"benchmarks/results/data_{args.profile}.json")
    write_json_atomic(path, out)
    log_mlflow(out, path)
    print(f"wrote {path}; total {out['total_wall_s']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
