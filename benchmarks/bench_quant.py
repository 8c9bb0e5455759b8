"""Benchmark low-bit (and N:M + low-bit) ``quant_matmul`` against dense fp32 ``torch.matmul`` and
torch's own CPU low-bit paths, cache-warm and cache-cold (``make bench-kernels`` / ``make bench-quant-kernels``).

Per (weight shape ``out x in``, batch, cache mode) every variant is timed *in the same loop* as the
dense fp32 matmul, interleaved repeat by repeat, so all see the same machine load; records hold
medians (wall clock, and process CPU time, which a preempting neighbour does not inflate),
``speedup = dense / variant``, the physical limit ``byte_ratio = dense bytes moved / variant
bytes moved`` (weights + x + y; what bounds a memory-bound call) and the fraction of it reached, the
effective bandwidth (bytes moved / time) and the 1-minute load average.

Cache modes:

* ``cold``: each variant rotates through enough copies of its weight that the copies together exceed
  ``COLD_FACTOR`` x the last-level cache (read from sysfs), so no call finds its weight in the LLC.
  This is the memory-bound case the byte limits describe; the issue's targets refer to it. The copies of
  all variants together stay under ``MEM_FRACTION`` of ``MemAvailable`` (a 300 MiB LLC asks ~1.2 GB per
  variant: 13 variants ran a 23 GiB machine out of memory); where that cap binds, the records say how many
  LLCs a variant's copies really span (``cold_llc_multiple``) and the run warns below 1.5.
* ``warm``: the same copy every call (a weight smaller than the LLC is then cache-resident; a weight
  larger than it, such as the fp32 dense 4096x11008 on a 32 MiB LLC, is streamed from DRAM anyway).

Variants: ``int8`` (per-channel, symmetric), ``int4_g32`` / ``int4_g128`` (symmetric; ``int4_g32_asym``),
``nm24_int4_g32`` (2:4 v = 1 + int4 over kept values) and ``nm24v32_int4_g32`` (2:4 with one
pattern per 32 rows, NM-SpMM's layout) from :mod:`kernels.quant`; ``nm24_fp32`` (the
fp32 2:4 v = 1 N:M kernel, :mod:`kernels.nm`); peers ``torch_dyn_int8`` (``quantize_dynamic``
per-channel int8 ``Linear``: activations quantized to int8 on the fly, int8 x int8 GEMM) and
``torch_int4pack`` (aten ``_weight_int4pack_mm_for_cpu``, the CPU int4 path torchao's int4 CPU layout
uses, g = 32, asymmetric; bf16 activations and scales, its fast path). Both peers change the
numerics (activation rounding); ours compute in fp32 on the exact dequantized weight, except the
``a8_*`` variants (``impl="native_a8"``: the ``int8`` / ``int4_g32`` / ``int4_g128`` weights with the
activations rounded to int8 per row, integer dot products), whose ``max_abs_err_vs_dequantized``
therefore includes that rounding, and the ``amx_*`` variants (``impl="native_amx"``: the same weights,
exact fp32 activations split into three bf16 parts, AMX tile dot products).

Output: ``benchmarks/results/quant_<device>[_<profile>][_t<threads>].json`` (atomic) and one MLflow
run in experiment ``bench-kernels``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness import device_name, finish, interleaved, log_mlflow, results_path, slug  # noqa: E402

from kernels.nm import NMWeight, nm_matmul  # noqa: E402
from kernels.quant import NMQuantWeight, QuantWeight, quant_matmul  # noqa: E402

COLD_FACTOR = 4  # copies of a weight together exceed this many LLCs in cold mode
MAX_COPIES = 128  # a 13 MB weight needs 92 copies to span 4 x a 300 MiB LLC
MEM_FRACTION = 0.5  # cold copies of all variants together stay under this share of MemAvailable

PROFILES = {
    "quick": {"shapes": [(4096, 11008)], "batches": [1, 16], "modes": ["cold", "warm"],
              "repeats": 7},
    "full": {"shapes": [(4096, 11008), (11008, 4096)], "batches": [1, 4, 16, 64],
             "modes": ["cold", "warm"], "repeats": 11},
    "smoke": {"shapes": [(256, 512)], "batches": [1, 3], "modes": ["cold", "warm"], "repeats": 2},
}
VARIANTS = ["int8", "int4_g32", "int4_g128", "int4_g32_asym", "nm24_int4_g32", "nm24v32_int4_g32",
            "nm24_fp32", "a8_int8", "a8_int4_g32", "a8_int4_g128", "amx_int8", "amx_int4_g32", "amx_int4_g128",
            "torch_dyn_int8", "torch_int4pack"]
#: variant prefix -> impl: the same weights as the exact twin named by the rest of the variant name
TWIN_IMPLS = {"a8_": "native_a8", "amx_": "native_amx"}


def twin_of(name: str) -> str | None:
    """The exact variant whose weights (and cold copies) a prefixed variant (``a8_int8``) shares."""
    for prefix in TWIN_IMPLS:
        if name.startswith(prefix):
            return name[len(prefix):]
    return None


def llc_bytes() -> int:
    """Size of the largest CPU cache reported by sysfs (the LLC), default 32 MiB."""
    best = 0
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip().upper()
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
        try:
            best = max(best, int(text.rstrip("KMG")) * mult)
        except ValueError:
            continue
    return best or 32 << 20


def mem_available() -> int:
    """``MemAvailable`` from /proc/meminfo in bytes (8 GiB where it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def cold_copies(nbytes: int, llc: int, budget: int) -> int:
    """Copies of an ``nbytes`` weight for cold mode: enough to span ``COLD_FACTOR`` LLCs, at most
    ``MAX_COPIES`` and at most ``budget`` bytes (at least one)."""
    return max(1, min(MAX_COPIES, -(-COLD_FACTOR * llc // nbytes), budget // nbytes))


def build_variant(name: str, w: torch.Tensor):
    """``(make_copy, call, nbytes)``: ``make_copy()`` builds one independent weight, ``call(obj, x)``
    multiplies, ``nbytes`` is what a call must read for the weight."""
    if name == "dense":
        return (lambda: w.clone(), lambda obj, x: torch.matmul(x, obj.T), w.numel() * 4)
    twin = twin_of(name)
    if twin is not None:  # native_a8 (activations rounded to int8 per row) / native_amx: the same weights
        inner, impl = build_variant(twin, w), TWIN_IMPLS[name[:-len(twin)]]
        return (inner[0], lambda obj, x: quant_matmul(obj, x, impl=impl), inner[2])
    if name.startswith("int") or name.startswith(("nm24_int4", "nm24v32_int4")):
        if name == "int8":
            q = QuantWeight.quantize(w, bits=8)
        elif name.startswith("int4"):
            q = QuantWeight.quantize(w, bits=4, group=int(name.split("_g")[1].split("_")[0]),
                                     symmetric=not name.endswith("asym"))
        else:
            v = 32 if name.startswith("nm24v32") else 1
            q = NMQuantWeight.from_nm(NMWeight.from_dense(w, n=2, m=4, v=v), bits=4, group=32)

        def copy_q(q=q):
            if isinstance(q, NMQuantWeight):
                inner = q.q
                return NMQuantWeight(q=QuantWeight(inner.codes.clone(), inner.scales.clone(), None,
                                                   inner.bits, inner.group, inner.shape),
                                     indices=q.indices.clone(), n=q.n, m=q.m, v=q.v, shape=q.shape)
            return QuantWeight(q.codes.clone(), q.scales.clone(),
                               None if q.zeros is None else q.zeros.clone(), q.bits, q.group, q.shape)

        return (copy_q, lambda obj, x: quant_matmul(obj, x, impl="native"), q.nbytes)
    if name == "nm24_fp32":
        nw = NMWeight.from_dense(w, n=2, m=4, v=1)
        return (lambda: NMWeight(nw.values.clone(), nw.indices.clone(), 2, 4, 1, nw.shape),
                lambda obj, x: nm_matmul(obj, x), nw.nbytes)
    if name == "torch_dyn_int8":
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        def make():
            lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
            lin.weight.data.copy_(w)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return quantize_dynamic(torch.nn.Sequential(lin),
                                        {torch.nn.Linear: per_channel_dynamic_qconfig})
        return (make, lambda obj, x: obj(x), w.numel() + w.shape[0] * 8)
    if name == "torch_int4pack":
        q = QuantWeight.quantize(w, bits=4, group=32, symmetric=False, scale_dtype=torch.float32)
        s, z = q.scales.float(), q.zeros.float()
        # torch's int4 CPU layout: w = (u - 8) * scale + zero, with zero = (8 - z) * scale; its fast
        # path takes bf16 activations and scales (fp32 ones hit a ~20x slower fallback here), so the
        # peer runs in bf16, casts included
        sz = torch.stack([s.T, ((8 - z) * s).T], dim=-1).to(torch.bfloat16).contiguous()  # (in/g, out, 2)
        u = q.unsigned_codes().to(torch.int32)

        def make():
            return (torch.ops.aten._convert_weight_to_int4pack_for_cpu(u, 1), sz.clone())
        nbytes = u.numel() // 2 + sz.numel() * 2

        def call(obj, x):
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(x.to(torch.bfloat16), obj[0], 32, obj[1])
            return y.float()
        return (make, call, nbytes)
    raise ValueError(f"unknown variant {name!r}; choose from {VARIANTS}")


def reference_of(obj) -> torch.Tensor | None:
    """The dequantized dense weight a variant should reproduce (None for peers with their own
    activation quantization)."""
    if isinstance(obj, (QuantWeight, NMQuantWeight)):
        return obj.dequantize()
    if isinstance(obj, NMWeight):
        return obj.to_dense()
    return None


def bench_point(out_f, in_f, batch, mode, names, repeats, gen, built, budget) -> list[dict]:
    """Time dense + every variant side by side for one (shape, batch, mode); ``budget``: bytes of cold
    copies allowed per variant."""
    llc = llc_bytes()
    x = torch.randn(batch, in_f, generator=gen)
    fns, nbytes, copies_used = {}, {}, {}
    for name in ["dense", *names]:
        make, call, nb = built[name]["spec"]
        want = 1 if mode == "warm" else cold_copies(nb, llc, budget)
        if mode == "cold" and want * nb < 1.5 * llc:
            print(f"warning: {name}: cold copies span only {want * nb / llc:.2f} LLCs (copy or memory cap)",
                  file=sys.stderr)
        pool = built[name]["copies"]
        while len(pool) < want:
            pool.append(make())
        use = pool[:want]
        state = {"i": 0}

        def fn(use=use, call=call, state=state):
            obj = use[state["i"] % len(use)]
            state["i"] += 1
            return call(obj, x)
        fns[name], nbytes[name], copies_used[name] = fn, nb, want
    with torch.no_grad():
        errs = {}
        for name in names:  # the dequantized reference is rebuilt per point, not kept (180 MB each)
            ref = reference_of(built[name]["copies"][0])
            if ref is not None:
                errs[name] = (fns[name]() - x @ ref.T).abs().max().item()
            del ref
        for key, fn in fns.items():  # warm-up: every copy once (lazy index layouts, page faults)
            for _ in range(copies_used[key]):
                fn()
        load_before = os.getloadavg()[0]
        times, cpu = interleaved(fns, repeats)  # cpu: process CPU time, blind to preemption
        load_after = os.getloadavg()[0]
    med = {k: statistics.median(t) for k, t in times.items()}
    med_cpu = {k: statistics.median(t) for k, t in cpu.items()}
    act = (batch * in_f + batch * out_f) * 4
    dense_moved = nbytes["dense"] + act
    records = []
    for name in names:
        moved = nbytes[name] + act
        speedup = med["dense"] / med[name]
        limit = dense_moved / moved
        records.append({
            "variant": name, "shape": f"{out_f}x{in_f}", "out_features": out_f, "in_features": in_f,
            "batch": batch, "mode": mode, "threads": torch.get_num_threads(),
            "ours_ms": med[name] * 1e3, "dense_ms": med["dense"] * 1e3, "speedup": speedup,
            "weight_bytes": nbytes[name], "weight_bytes_dense": nbytes["dense"],
            "bytes_moved": moved, "bytes_moved_dense": dense_moved, "byte_limit": limit,
            "fraction_of_byte_limit": speedup / limit,
            "gbps": moved / med[name] / 1e9, "gbps_dense": dense_moved / med["dense"] / 1e9,
            "copies": copies_used[name], "copies_dense": copies_used["dense"],
            "cold_llc_multiple": copies_used[name] * nbytes[name] / llc if mode == "cold" else None,
            "weight_fits_llc": nbytes[name] <= llc, "llc_bytes": llc,
            "ours_cpu_ms": med_cpu[name] * 1e3, "dense_cpu_ms": med_cpu["dense"] * 1e3,
            "speedup_cpu": med_cpu["dense"] / max(med_cpu[name], 1e-9),
            "ours_min_ms": min(times[name]) * 1e3, "dense_min_ms": min(times["dense"]) * 1e3,
            "speedup_of_mins": min(times["dense"]) / min(times[name]),
            "max_abs_err_vs_dequantized": errs.get(name), "repeats": repeats,
            "loadavg_1min": [load_before, load_after],
        })
    return records


def log_records(records: list[dict], json_path: Path, profile: str, device: str) -> None:
    log_mlflow(records, json_path, f"quant-{profile}-{slug(device)}",
               {"device": device, "profile": profile, "bench": "quant"},
               key=lambda r: f"{r['variant']}_{r['shape']}_b{r['batch']}_{r['mode']}",
               metrics=("speedup", "fraction_of_byte_limit", "ours_ms"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=os.environ.get("BENCH_PROFILE", "quick"),
                        choices=sorted(PROFILES))
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated subset of {VARIANTS}")
    parser.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads")
    parser.add_argument("--modes", default=None, help="comma-separated subset of cold,warm (default: the profile's)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/...)")
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    bad = [v for v in names if v not in VARIANTS]
    if bad:
        print(f"--variants: unknown {bad}; choose from {VARIANTS}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    prof = PROFILES[args.profile]
    name = device_name(torch.device("cpu"))
    out_path = (Path(args.out) if args.out
                else results_path("quant", name, args.profile, [f"t{args.threads}"] if args.threads else []))
    gen = torch.Generator().manual_seed(0)
    records, t_start = [], time.time()
    for out_f, in_f in prof["shapes"]:
        w = torch.randn(out_f, in_f, generator=gen)
        built = {}
        for vname in ["dense", *names]:
            spec = build_variant(vname, w)
            inner = built.get(twin_of(vname)) if twin_of(vname) else None
            # a8_* / amx_* multiply the same weights as their exact twin: one pool of copies for both
            built[vname] = {"spec": spec, "copies": inner["copies"] if inner else [spec[0]()]}
        budget = int(MEM_FRACTION * mem_available()) // (len(built) + 1)
        for mode in (args.modes.split(",") if args.modes else prof["modes"]):
            for batch in prof["batches"]:
                recs = bench_point(out_f, in_f, batch, mode, names, prof["repeats"], gen, built, budget)
                records.extend(recs)
                for r in recs:
                    print(f"{r['shape']} b={batch:<3} {mode:<4} {r['variant']:>15}: {r['ours_ms']:8.2f} ms "
                          f"dense {r['dense_ms']:8.2f} ms  {r['speedup']:5.2f}x (byte limit "
                          f"{r['byte_limit']:5.2f}x, {r['fraction_of_byte_limit']:.2f}; cpu-time "
                          f"{r['speedup_cpu']:5.2f}x; "
                          f"{r['gbps']:5.1f} GB/s vs dense {r['gbps_dense']:5.1f}; load "
                          f"{r['loadavg_1min'][0]:.1f})", flush=True)
        del built
    payload = {"device": name, "profile": args.profile, "torch": torch.__version__,
               "threads": torch.get_num_threads(), "llc_bytes": llc_bytes(),
               "cold_factor": COLD_FACTOR, "mem_fraction": MEM_FRACTION, "wall_s": time.time() - t_start, "records": records}
    return finish(payload, out_path,
                  None if args.no_mlflow else lambda: log_records(records, out_path, args.profile, name))


if __name__ == "__main__":
    raise SystemExit(main())
