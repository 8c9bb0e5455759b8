"""GLD's sorting-based Gromov-Wasserstein approximation vs exact solvers: error and speed.

For n classes we build co-activation graphs (tasks/distill/losses/gld.py) of a "teacher" batch of
logits and of a "student" batch (the teacher's logits plus noise, nodes relabelled at
random, so that matching nodes by label is wrong), then compare

* ``gw_sort``: the closed-form approximation (sort by weighted degree, match by rank);
* POT's ``gromov_wasserstein2`` (conditional gradient; a local solver, the usual "exact"
  reference);
* brute force over all n! permutation couplings (n <= 8): the best permutation.

Reports the relative gap to each reference (median over graphs) and the median wall-time
ratio POT / gw_sort.

    .venv/bin/python benchmarks/bench_gld.py [--graphs 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from tasks.platform import artifacts  # noqa: E402
from tasks.distill.losses.gld import coactivation_graph, gw_best_permutation, gw_exact_pot, gw_sort  # noqa: E402


def timed(fn, *args, repeats: int = 3):
    out, ts = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args)
        ts.append(time.perf_counter() - t0)
    return out, statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graphs", type=int, default=10)
    ap.add_argument("--sizes", default="6,8,16,32,64,128")
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/gld.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        gap_pot, gap_best, speedup, t_sort, t_pot = [], [], [], [], []
        for _ in range(args.graphs):
            logits = torch.randn(256, n, generator=g) * 2
            a = coactivation_graph(logits, top_k=max(2, n // 4)).double()
            b = coactivation_graph(logits + args.noise * torch.randn(256, n, generator=g), top_k=max(2, n // 4)).double()
            perm = torch.randperm(n, generator=g)
            b = b[perm][:, perm]
            approx, ts = timed(lambda: gw_sort(a, b).item())
            pot, tp = timed(gw_exact_pot, a.numpy(), b.numpy())
            gap_pot.append((approx - pot) / pot)
            speedup.append(tp / ts)
            t_sort.append(ts)
            t_pot.append(tp)
            if n <= 8:
                best = gw_best_permutation(a, b)
                gap_best.append((approx - best) / best)
        row = {
            "n": n,
            "graphs": args.graphs,
            "rel_gap_vs_pot_median": statistics.median(gap_pot),
            "rel_gap_vs_pot_max": max(gap_pot),
            "sort_below_pot_fraction": sum(x < -1e-9 for x in gap_pot) / len(gap_pot),
            "speedup_pot_over_sort_median": statistics.median(speedup),
            "sort_ms_median": 1e3 * statistics.median(t_sort),
            "pot_ms_median": 1e3 * statistics.median(t_pot),
        }
        if gap_best:
            row["rel_gap_vs_best_permutation_median"] = statistics.median(gap_best)
            row["rel_gap_vs_best_permutation_max"] = max(gap_best)
        rows.append(row)
        print(
            f"n={n:4d}  gap vs POT median {row['rel_gap_vs_pot_median']:+.3f} (max {row['rel_gap_vs_pot_max']:+.3f})"
            + (f"  gap vs best perm median {row['rel_gap_vs_best_permutation_median']:+.3f}" if gap_best else "")
            + f"  speed-up {row['speedup_pot_over_sort_median']:.1f}x ({row['sort_ms_median']:.3f} vs {row['pot_ms_median']:.3f} ms)"
        )
    result = {"benchmark": "gld_gw_sort_vs_exact", "noise": args.noise, "rows": rows}
    artifacts.write(args.out, result)
    import mlflow

    mlflow.set_experiment("bench-gld")
    with mlflow.start_run(run_name="gw_sort_vs_pot"):
        for row in rows:
            mlflow.log_metrics({f"n{row['n']}.{k}": v for k, v in row.items() if isinstance(v, float)})
        mlflow.log_artifact(args.out)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
