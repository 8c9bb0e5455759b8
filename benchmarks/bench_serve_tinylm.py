"""Serve the quantized tinylm at the full architecture without training it (``make``-free: run directly).

Runs the ``serve`` stage core (:func:`tasks.quant.serving.serve_tinylm`) on random-init tinylm weights of
``params.yaml``'s ``lqer.train.model`` for a few seeds: latency per token, characters per second and bytes
do not depend on training (bits/char does: it is reported but meaningless here), so this measures in
minutes what the full pipeline measures after ~20 min of training per seed.

    .venv/bin/python benchmarks/bench_serve_tinylm.py [--seeds 0,1,2] [--serve '{"repeats": 5}']

Output: ``benchmarks/results/serve_tinylm_<device>.json`` (atomic; rows + metrics of the stage).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness import device_name, finish, results_path  # noqa: E402

from flows.papers import discover  # noqa: E402
from models.tinylm import TinyLM  # noqa: E402
from tasks.audit.text_detect import corpus_text  # noqa: E402
from tasks.platform.params import load_all  # noqa: E402
from tasks.quant.serving import ServeQuantParams, serve_tinylm  # noqa: E402
from tasks.quant.tinylm import make_passages  # noqa: E402
from tasks.train import pack_seeds  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--serve", default="{}", help="JSON overrides of the serve section")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    full = load_all({name: paper.params_model for name, paper in discover().items()}, "full")["lqer"]
    serve = ServeQuantParams(**{**full.serve.model_dump(), **json.loads(args.serve)})
    spec = full.train.model
    weights = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        torch.manual_seed(seed)
        weights[seed] = TinyLM(spec).state_dict()
    t0 = time.time()
    out = serve_tinylm(serve, weights=pack_seeds(weights), train_metrics={"spec": spec.model_dump()},
                       passages=make_passages(full.data, corpus_text()))
    records = out["results"].to_pylist()
    for r in records:
        print(f"seed {r['seed']} b={r['batch']:<3} {r['impl']:>9}: fp32 {r['fp32_ms_per_token']:7.2f} ms/token, "
              f"int{serve.weight.bits} {r['quant_ms_per_token']:7.2f} ms/token ({r['speedup']:.2f}x), "
              f"parity {r['max_abs_logit_diff']:.1e}", flush=True)
    name = device_name(torch.device("cpu"))
    payload = {"device": name, "torch": torch.__version__, "spec": spec.model_dump(), "serve": serve.model_dump(),
               "untrained": True, "wall_s": time.time() - t0, "records": records, "metrics": out["metrics"]}
    return finish(payload, Path(args.out) if args.out else results_path("serve_tinylm", name, "quick"), None)


if __name__ == "__main__":
    raise SystemExit(main())
