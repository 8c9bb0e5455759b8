"""Query time of the target-aware and weak-supervision selectors vs pool size (issue 15).

    python benchmarks/bench_data_gio.py [--sizes 1000 4000 20000] [--repeats 3] [--out PATH]

Per pool size N (features d = 16, a target set of 100 points from a shifted Gaussian, budget
N / 10): median seconds of one ``select`` call for ``gio`` (k = 5, 50 gradient steps per pick,
``patience=None`` so every size runs the whole budget: the worst case), ``color_filter``
(tau = 4, precomputed losses) and ``weak_uncertainty`` / ``weak_influence`` (reweighted).
Results: JSON (default ``benchmarks/results/data_gio.json``) with the machine's load average,
since the box is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bench(sizes: list[int], repeats: int, gio_budget_cap: int) -> list[dict]:
    import numpy as np

    from tasks.data_selection.selection import Pool, select

    rows = []
    for n in sizes:
        rng = np.random.default_rng(n)
        feats = rng.standard_normal((n, 16))
        target = Pool(np.arange(100), {"features": rng.standard_normal((100, 16)) * 0.5 + 0.5})
        p = 1 / (1 + np.exp(-feats[:, 0] * 2))
        pool = Pool(np.arange(n), {"features": feats, "prior_loss": rng.uniform(1, 3, n),
                                   "conditional_loss": rng.uniform(1, 3, n), "surrogate_probs": p})
        budget = n // 10
        cases = {
            "gio": (min(budget, gio_budget_cap), dict(selector="gio", target=target, patience=None)),
            "color_filter": (budget, dict(selector="color_filter", tau=4.0)),
            "weak_uncertainty": (budget, dict(selector="weak_uncertainty", reweight=True)),
            "weak_influence": (budget, dict(selector="weak_influence", reweight=True)),
        }
        for name, (b, kw) in cases.items():
            secs = []
            for r in range(repeats):
                t0 = time.perf_counter()
                s = select(pool, b, seed=r, **kw)
                secs.append(time.perf_counter() - t0)
            rows.append({"selector": name, "pool": n, "budget": b, "picks": int(len(s.ids)),
                         "median_s": statistics.median(secs), "per_pick_ms": 1e3 * statistics.median(secs) / max(1, len(s.ids))})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 20000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gio-budget-cap", type=int, default=400, help="most GIO picks per query (cost is per pick)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "data_gio.json"))
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = bench(a.sizes, a.repeats, a.gio_budget_cap)
    out = {"rows": rows, "machine": platform.machine(), "cpus": os.cpu_count(), "loadavg": os.getloadavg()}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(a.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2, sort_keys=True))
    os.replace(tmp, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
