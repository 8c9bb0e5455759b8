"""Per-call cost of one linear layer at decode batch sizes: fp32 ``nn.Linear`` vs ``QuantLinear``
(int4 g = 32) over a sweep of square widths, to find where quantized layers start to pay.

For each width d (a d x d layer) and batch it times, interleaved repeat by repeat in one process
(process CPU time, medians): ``nn.Linear``; ``QuantLinear`` through the bound light path
(``bind_matmul``) with the exact ``native`` kernel and with ``native_a8``; and the unbound
``quant_matmul(..., impl="native")`` call (all the per-call checks) to show the fixed overhead.
The smallest widths are tinylm's (d_model 128, d_ff 384): there both formats are cache-resident and
a call costs its fixed overhead, not its bytes.

    .venv/bin/python benchmarks/bench_linear_sweep.py [--widths 128,256,...] [--batches 1,16]

Output: ``benchmarks/results/linear_sweep_<device>.json`` (atomic).
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

from harness import device_name, finish, interleaved, results_path  # noqa: E402

from kernels.quant import quant_matmul  # noqa: E402
from kernels.quant.native_a8 import isa  # noqa: E402
from models.quant_linear import QuantLinear  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="128,384,1024,2048,4096")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--calls", type=int, default=0, help="calls per repeat (0: ~2e8 MACs worth, 20..2000)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    records, t0 = [], time.time()
    for d in (int(v) for v in args.widths.split(",")):
        lin = torch.nn.Linear(d, d, bias=False)
        q_exact = QuantLinear.from_linear(lin, bits=4, group=32, impl="native")
        q_a8 = QuantLinear.from_linear(lin, bits=4, group=32, impl="native_a8")
        w = q_exact.weight()
        for batch in (int(v) for v in args.batches.split(",")):
            x = torch.randn(batch, d, generator=gen)
            calls = args.calls or max(20, min(2000, int(2e8 // (d * d * batch))))

            def loop(f, calls=calls, x=x):
                def run():
                    for _ in range(calls):
                        f(x)
                return run
            fns = {"fp32_linear": loop(lin), "quant_bound_native": loop(q_exact),
                   "quant_bound_a8": loop(q_a8),
                   "quant_matmul_native_unbound": loop(lambda x, w=w: quant_matmul(w, x, impl="native"))}
            with torch.no_grad():
                for f in fns.values():
                    f()
                load = os.getloadavg()[0]
                _, cpu = interleaved(fns, args.repeats)
            us = {k: statistics.median(v) / calls * 1e6 for k, v in cpu.items()}
            rec = {"width": d, "batch": batch, "calls": calls, "repeats": args.repeats,
                   "fp32_weight_bytes": d * d * 4, "int4_weight_bytes": w.nbytes,
                   **{f"{k}_cpu_us": v for k, v in us.items()},
                   "speedup_bound_native": us["fp32_linear"] / us["quant_bound_native"],
                   "speedup_bound_a8": us["fp32_linear"] / us["quant_bound_a8"],
                   "speedup_unbound_native": us["fp32_linear"] / us["quant_matmul_native_unbound"],
                   "loadavg_1min": load}
            records.append(rec)
            print(f"d={d:<5} b={batch:<3} fp32 {us['fp32_linear']:9.1f} us | int4 bound native "
                  f"{us['quant_bound_native']:9.1f} ({rec['speedup_bound_native']:.2f}x) a8 "
                  f"{us['quant_bound_a8']:9.1f} ({rec['speedup_bound_a8']:.2f}x) | unbound native "
                  f"{us['quant_matmul_native_unbound']:9.1f} us  load {load:.1f}", flush=True)
    name = device_name(torch.device("cpu"))
    payload = {"device": name, "torch": torch.__version__, "a8_isa": isa(), "threads": 1,
               "wall_s": time.time() - t0, "records": records}
    return finish(payload, Path(args.out) if args.out else results_path("linear_sweep", name, "quick"), None)


if __name__ == "__main__":
    raise SystemExit(main())
