"""Benchmark N:M matmul impls against dense ``torch.matmul`` on this device (``make bench-kernels``).

For every (shape, batch, pattern, v, dtype) the timed calls of our ``nm_matmul`` (the impl ``auto``
picks, or each impl given by ``--impls``) and of the dense matmul on the same (zero-filled) weight
are interleaved repeat by repeat, so both see the same machine load; we report medians, the ratio
``speedup = dense / ours``, the ideal ``m / n`` and the fraction of it reached, plus bytes of weights
and of weights + activations moved (the latter is what bounds a memory-bound call: at batch 1 the
speedup bound is the weight-bytes ratio, not m/n; see docs/kernels.md).

Shapes are nn.Linear weight shapes ``out x in`` (4096x11008 = LLaMA-7B down_proj: in 11008, out 4096).

Output: JSON records written atomically to ``benchmarks/results/kernels_<device>.json`` and one MLflow
run (experiment ``bench-kernels``, ``sqlite:///mlflow.db`` unless ``MLFLOW_TRACKING_URI`` is set).
Profiles: ``quick`` (a few minutes on 2 CPU cores) and ``full`` (the issue's grid).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))

from harness import device_name, finish, interleaved, log_mlflow, results_path, slug  # noqa: E402

from kernels.nm import NMWeight, impls, nm_matmul, select_impl  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# (out, in) weight shapes, batches, (n, m, v) patterns, dtypes, repeats
PROFILES = {
    "quick": {
        "shapes": [(4096, 11008), (11008, 4096)],
        "batches": [1, 16],
        "patterns": [(1, 8, 32), (2, 4, 32), (2, 4, 1), (1, 8, 1), (16, 32, 32), (8, 32, 32),
                     (4, 32, 32)],
        "dtypes": ["fp32"],
        "repeats": 9,
        "impl": "all",
    },
    "full": {
        "shapes": [(1024, 1024), (2048, 2048), (4096, 4096), (8192, 8192),
                   (4096, 11008), (11008, 4096)],
        "batches": [1, 16, 64, 2048],
        "patterns": [(1, 2, 1), (2, 4, 1), (2, 4, 32), (1, 4, 32), (2, 8, 32), (1, 8, 1), (1, 8, 32),
                     (16, 32, 32), (12, 32, 32), (8, 32, 32), (4, 32, 32)],
        "dtypes": ["fp32", "bf16"],
        "repeats": 15,
        "impl": "all",
    },
}


def timed_side_by_side(fns: dict, repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds of each fn per repeat, interleaved within every repeat, after two warm-up calls each
    (caches, lazy index layouts, autotuning)."""
    for fn in fns.values():
        fn()
        fn()
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    return interleaved(fns, repeats, sync)[0]


def candidate_impls(w: NMWeight, x: torch.Tensor, impl: str) -> list[str]:
    """``auto`` -> the impl auto picks; ``all`` -> every available impl that can run this input."""
    if impl != "all":
        return [select_impl(w, x, impl).name]
    names = []
    for name, cand in sorted(impls().items()):
        if name == "reference" or not cand.available() or x.dtype not in cand.dtypes:
            continue
        if name in ("triton", "semi_structured") and (x.device.type != "cuda" or not cand.supports(w, x)):
            continue  # never time the Triton CPU interpreter
        if name == "native" and x.shape[0] > 64:
            continue
        names.append(name)
    return names


def bench_one(out_f, in_f, batch, n, m, v, dtype_name, impl, repeats, device, gen):
    """Records (one per timed impl) for one (shape, batch, pattern, v, dtype) point."""
    dtype = DTYPES[dtype_name]
    w_dense = torch.randn(out_f, in_f, generator=gen)
    w = NMWeight.from_dense(w_dense, n=n, m=m, v=v).to(device=device, dtype=dtype)
    del w_dense
    dense = w.to_dense().contiguous()  # the same weight with zeros, for dense torch.matmul
    x = torch.randn(batch, in_f, generator=gen).to(device=device, dtype=dtype)
    names = candidate_impls(w, x, impl)
    semi = impls().get("semi_structured")
    if semi is not None and semi.available() and semi.supports(w, x) and "semi_structured" not in names:
        names.append("semi_structured")  # the peer to beat at 2:4 on GPU
    with torch.no_grad():
        ref = x @ dense.T
        errs = {nm: (nm_matmul(w, x, impl=nm).float() - ref.float()).abs().max().item() for nm in names}
        fns = {"dense": lambda: torch.matmul(x, dense.T)}
        for nm in names:
            fns[nm] = (lambda nm=nm: nm_matmul(w, x, impl=nm))
        load_before = os.getloadavg()[0]
        runs = timed_side_by_side(fns, repeats, device)
        load_after = os.getloadavg()[0]
    med = {k: statistics.median(t) for k, t in runs.items()}
    best = {k: min(t) for k, t in runs.items()}
    elt = x.element_size()
    act_bytes = (batch * in_f + batch * out_f) * elt
    records = []
    for nm in names:
        records.append({
            "device": device_name(device), "impl": nm, "pattern": f"{n}:{m}", "n": n, "m": m, "v": v,
            "dtype": dtype_name, "shape": f"{out_f}x{in_f}", "out_features": out_f,
            "in_features": in_f, "batch": batch, "threads": torch.get_num_threads(),
            "ours_ms": med[nm] * 1e3, "dense_ms": med["dense"] * 1e3,
            "speedup": med["dense"] / med[nm], "ideal": m / n,
            "fraction_of_ideal": med["dense"] / med[nm] / (m / n),
            "weight_bytes_dense": out_f * in_f * elt, "weight_bytes_ours": w.nbytes,
            "weight_bytes_ratio": out_f * in_f * elt / w.nbytes,
            "bytes_moved_dense": out_f * in_f * elt + act_bytes,
            "bytes_moved_ours": w.nbytes + act_bytes,
            "max_abs_err_vs_dense": errs[nm], "repeats": repeats,
            # NOTE: on a shared machine the ratio of minima is the least load-sensitive estimate
            "ours_min_ms": best[nm] * 1e3, "dense_min_ms": best["dense"] * 1e3,
            "speedup_of_mins": best["dense"] / best[nm],
            "loadavg_1min": [load_before, load_after],
        })
    return records


def log_records(records: list[dict], json_path: Path, profile: str, device: str) -> None:
    log_mlflow(records, json_path, f"{profile}-{slug(device)}", {"device": device, "profile": profile},
               key=lambda r: f"{r['impl']}_{r['n']}-{r['m']}_v{r['v']}_{r['dtype']}_{r['shape']}_b{r['batch']}",
               metrics=("speedup", "ours_ms", "dense_ms"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=os.environ.get("BENCH_PROFILE", "quick"),
                        choices=sorted(PROFILES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--impl", default=None,
                        help="nm_matmul impl: auto, all (every usable impl but the reference) or a "
                             "name; default: the profile's")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/...)")
    parser.add_argument("--dtypes", default=None,
                        help="comma-separated dtypes overriding the profile's (fp32,bf16,fp16)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch/OpenMP threads (default: torch's); 1 is the least sensitive to "
                             "other load on a shared machine")
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args(argv)
    prof = dict(PROFILES[args.profile])
    if args.dtypes:
        bad = [d for d in args.dtypes.split(",") if d not in DTYPES]
        if bad:
            raise SystemExit(f"--dtypes: unknown {bad}; choose from {sorted(DTYPES)}")
        prof["dtypes"] = args.dtypes.split(",")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = device_name(device)
    extra = ([f"t{args.threads}"] if args.threads else []) + ([args.dtypes.replace(",", "-")] if args.dtypes else [])
    out_path = Path(args.out) if args.out else results_path("kernels", name, args.profile, extra)
    gen = torch.Generator().manual_seed(0)
    impl = args.impl or prof["impl"]
    records = []
    t_start = time.time()
    for out_f, in_f in prof["shapes"]:
        for dtype_name in prof["dtypes"]:
            for n, m, v in prof["patterns"]:
                for batch in prof["batches"]:
                    recs = bench_one(out_f, in_f, batch, n, m, v, dtype_name, impl,
                                     prof["repeats"], device, gen)
                    records.extend(recs)
                    for rec in recs:
                        print(f"{rec['shape']:>11} b={batch:<5} {rec['pattern']:>5} v={v:<3} {dtype_name} "
                              f"{rec['impl']:>9}: ours {rec['ours_ms']:8.2f} ms  dense "
                              f"{rec['dense_ms']:8.2f} ms  speedup {rec['speedup']:5.2f}x "
                              f"(ideal {rec['ideal']:.0f}x, {rec['fraction_of_ideal']:.2f}; "
                              f"of mins {rec['speedup_of_mins']:.2f}x; load "
                              f"{rec['loadavg_1min'][0]:.1f})", flush=True)
    payload = {"device": name, "profile": args.profile, "torch": torch.__version__,
               "threads": torch.get_num_threads(), "wall_s": time.time() - t_start,
               "records": records}
    return finish(payload, out_path,
                  None if args.no_mlflow else lambda: log_records(records, out_path, args.profile, name))


if __name__ == "__main__":
    raise SystemExit(main())
