"""Cost of fair comparisons (issue #17): what the equal-budget tuning adds to each paper.

Runs every stage of each paper through the stage shell (``tasks.platform.stage.run_stage``, as Prefect
and DVC do) in a fresh store (nothing cached, trial cache empty) and splits the wall time into
the paper's own stages (arms at the paper's settings, the paper's report) and the stages
tuning adds (``tune``/``tune_<dataset>``, ``*_tuned``: the tuned arms, their evaluation and the
tuned report, and the merged ``report``). Goals: the smoke profile adds <= 30 s per paper; the
full profile of all KD papers with tuning fits in 60 min on 2 cores (nm_sparsity is measured
too, outside that goal).

    .venv/bin/python benchmarks/bench_tuning.py [--profile smoke|full] [--papers pld,infigfusion]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

from flows.papers import discover  # noqa: E402
from tasks.platform import artifacts  # noqa: E402
from tasks.platform.params import load_all  # noqa: E402
from tasks.platform.stage import resolve_inputs, run_stage  # noqa: E402

KD_PAPERS = ("logit_standardization", "pld", "dual_head_kd", "negative_flips", "infigfusion")
PAPERS = (*KD_PAPERS, "nm_sparsity")
GOAL_SMOKE_ADDED_S = 30.0
GOAL_FULL_TOTAL_S = 3600.0


def is_tune(stage: str) -> bool:
    """A selection stage: ``tune`` (KD papers) or ``tune_<dataset>`` (nm_sparsity)."""
    return stage == "tune" or stage.startswith("tune_")


def added_by_tuning(stage: str) -> bool:
    """Stages that exist only because of tuning (the merged ``report`` replaces the paper's)."""
    return is_tune(stage) or stage.endswith("_tuned") or stage == "report"


def bench_paper(paper, params) -> dict:
    """Run every stage of ``paper`` in a fresh store; per-stage wall and CPU seconds."""
    os.environ["REPROLAB_HOME"] = tempfile.mkdtemp(prefix=f"bench-tuning-{paper.name}-")
    results, stages = {}, {}
    for st in paper.stages:
        t0, c0 = time.perf_counter(), time.process_time()
        results[st.name] = run_stage(paper, st, params, resolve_inputs(st, results))
        stages[st.name] = {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
    tunes = [s for s in stages if is_tune(s)]
    studies = {s: artifacts.read(results[s].path("tuned")) for s in tunes}
    trials = sum(artifacts.read(results[s].path("trials")).num_rows for s in tunes)
    tuned = next(iter(studies.values()))
    claims = artifacts.read(results["report"].path("claims"))
    added = sum(v["seconds"] for k, v in stages.items() if added_by_tuning(k))
    total = sum(v["seconds"] for v in stages.values())
    return {
        "stages": stages,
        "seconds_total": total,
        "seconds_added_by_tuning": added,
        "seconds_tune_stages": sum(stages[s]["seconds"] for s in tunes),
        "cpu_seconds_added_by_tuning": sum(v["cpu_seconds"] for k, v in stages.items() if added_by_tuning(k)),
        "arms": len(tuned["arms"]),
        "budget": tuned["budget"],
        "epochs_per_trial": tuned["epochs_per_trial"],
        "tune_stages": len(tunes),
        "student_fits_in_search": trials * len(tuned["budget"]["seeds"]),
        "robust": claims["counts"].get("robust"),
        "depends_on_tuning": claims["counts"].get("depends on tuning"),
        "tuned_is_paper": {f"{s}/{a}": v["tuned_is_paper"] for s, st in studies.items() for a, v in st["arms"].items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", choices=("smoke", "full"), default="smoke")
    ap.add_argument("--papers", default=",".join(PAPERS))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = Path(args.out or ROOT / f"benchmarks/results/tuning_{args.profile}.json")
    papers = discover()
    params = load_all({n: p.params_model for n, p in papers.items()}, profile=args.profile)
    load_start = os.getloadavg()
    rows = {}
    for name in args.papers.split(","):
        rows[name] = bench_paper(papers[name], params[name])
        r = rows[name]
        print(f"{name}: total {r['seconds_total']:.1f} s, tuning adds {r['seconds_added_by_tuning']:.1f} s "
              f"(tune {r['seconds_tune_stages']:.1f} s, {r['student_fits_in_search']} fits)", flush=True)
    added = max(r["seconds_added_by_tuning"] for r in rows.values())
    total = sum(r["seconds_total"] for p, r in rows.items() if p in KD_PAPERS)
    result = {
        "benchmark": "tuning",
        "profile": args.profile,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "torch_threads": int(os.environ.get("REPROLAB_TORCH_THREADS", "1")),
        "load_average_start": load_start,
        "load_average": os.getloadavg(),
        "papers": rows,
        "max_seconds_added_per_paper": added,
        "seconds_total_kd_papers": total,
        "goal": (f"smoke adds <= {GOAL_SMOKE_ADDED_S:.0f} s per paper" if args.profile == "smoke"
                 else f"all KD papers with tuning <= {GOAL_FULL_TOTAL_S / 60:.0f} min"),
        "meets_goal": added <= GOAL_SMOKE_ADDED_S if args.profile == "smoke" else total <= GOAL_FULL_TOTAL_S,
    }
    artifacts.write(out, result)
    print(f"wrote {out}: max added {added:.1f} s/paper, all papers {total:.1f} s, meets goal: {result['meets_goal']}")
    import mlflow

    mlflow.set_experiment("bench-tuning")
    with mlflow.start_run(run_name=f"tuning_{args.profile}"):
        mlflow.log_metrics({f"{p}.{k}": float(v) for p, r in rows.items() for k, v in r.items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)})
        mlflow.log_artifact(str(out))


if __name__ == "__main__":
    main()
