"""BoA: the quantize core on a tiny untrained tinylm, report verdicts."""

from __future__ import annotations

import pyarrow as pa
import torch

from models.tinylm import TinyLM
from tasks.papers.boa import BoAParams, BoAReportParams, boa_run, report_boa
from tasks.train import pack_seeds
from tests.papers.test_resq import SPEC, _passages


def test_quantize_core_arms_codes_and_errors():
    torch.manual_seed(1)
    weights = pack_seeds({s: TinyLM(SPEC).state_dict() for s in (0, 1)})
    out = boa_run(BoAParams(bits=(2, 4), n_calib=8, n_attn=4), weights=weights, train_metrics={"spec": SPEC.model_dump()},
                  passages=_passages())
    rows = out["results"].to_pylist()
    assert {r["arm"] for r in rows} == {"fp32", "rtn_w2", "gptq_w2", "boa_w2", "rtn_w4", "gptq_w4", "boa_w4"}
    err = {(r["seed"], r["arm"]): r["attn_err"] for r in rows}
    for s in (0, 1):
        assert err[(s, "rtn_w2")] > err[(s, "rtn_w4")] > 0  # fewer bits, larger attention-output error
    codes = out["quantized"]["0.w2.model.layers.0.self_attn.q_proj.codes"]
    assert codes.dtype == torch.uint8 and int(codes.max()) <= 3
    assert set(out["metrics"]) >= {"boa_w2_s", "gptq_w2_s", "rtn_w4_s"}
    # seeds in 2 spawned worker processes: the same rows and the same stored codes as one process
    two = boa_run(BoAParams(bits=(2, 4), n_calib=8, n_attn=4, workers=2), weights=weights,
                  train_metrics={"spec": SPEC.model_dump()}, passages=_passages())
    assert two["results"].equals(out["results"])
    assert two["quantized"].keys() == out["quantized"].keys()
    assert all(torch.equal(two["quantized"][k], v) for k, v in out["quantized"].items())


def _inputs(gain2: float, gain4: float) -> dict:
    rows = []
    for seed, base in enumerate((2.0, 2.1, 2.05)):
        rows.append({"seed": seed, "arm": "fp32", "method": "fp32", "bits": 32, "test_bpc": base, "attn_err": 0.0})
        for b, gain, gap in ((2, gain2, 0.5), (3, gain2, 0.2), (4, gain4, 0.02)):
            for m, v in (("rtn", 2 * gap), ("gptq", gap), ("boa", gap - gain)):
                rows.append({"seed": seed, "arm": f"{m}_w{b}", "method": m, "bits": b,
                             "test_bpc": base + v + 0.001 * seed, "attn_err": v / 10 + 0.0001 * seed})
    return {"results": pa.Table.from_pylist(rows), "train_metrics": {"n_params": 10, "test_bpc_mean": 2.0},
            "metrics": {"boa_w2_s": 1.0}}


def test_report_verdicts_follow_the_numbers():
    good = report_boa(BoAReportParams(), **_inputs(0.1, 0.005))
    assert [c["verdict"] for c in good["claims"]["claims"]] == ["reproduced"] * 3, good["report"]
    bad = report_boa(BoAReportParams(), **_inputs(-0.01, 0.005))
    assert [c["verdict"] for c in bad["claims"]["claims"]] == ["not reproduced"] * 3
