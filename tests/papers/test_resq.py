"""ResQ: the quantize core on a tiny untrained tinylm (every arm, exact bit accounting), report verdicts, bad params."""

from __future__ import annotations

import pyarrow as pa
import pytest
import torch

from models.tinylm import TinyLM, TinyLMSpec
from tasks.papers.resq import ARMS, KV_ARMS, ResQParams, ResQReportParams, report_resq, resq_quantize
from tasks.quant.tinylm import PASSAGES_SCHEMA
from tasks.train import pack_seeds

SPEC = TinyLMSpec(d_model=32, n_heads=2, n_layers=1, d_ff=64, max_len=16)


def _passages() -> pa.Table:
    g = torch.Generator().manual_seed(0)
    text = "".join(chr(97 + int(i)) for i in torch.randint(0, 20, (17 * 30,), generator=g))
    rows = [{"split": s, "text": text[17 * i : 17 * (i + 1)]} for i, s in enumerate(["test"] * 6 + ["train"] * 24)]
    return pa.Table.from_pylist(rows, schema=PASSAGES_SCHEMA)


def test_quantize_core_runs_every_arm_with_exact_bits():
    torch.manual_seed(0)
    weights = pack_seeds({s: TinyLM(SPEC).state_dict() for s in (0, 1)})
    tm = {"spec": SPEC.model_dump()}
    out = resq_quantize(ResQParams(n_draws=1, n_calib=8), weights=weights, train_metrics=tm, passages=_passages())
    rows = out["results"].to_pylist()
    assert {r["arm"] for r in rows} == set(ARMS) | set(KV_ARMS)
    assert sum(r["arm"] == "spinquant" for r in rows) == sum(r["arm"] == "spinquant_kv" for r in rows) == 2
    n_w = 4 * 32 * 32 + 2 * 64 * 32 + 32 * 64
    bpw = {r["arm"]: r["bits_per_weight"] for r in rows if r["seed"] == 0}
    # ResQ: per linear, (in - in/8) columns at 4 bits + in/8 at 8 bits, one fp16 scale per row and block
    resq_bits = 4 * (32 * 28 * 4 + 32 * 4 * 8 + 2 * 32 * 16) + 2 * (64 * 28 * 4 + 64 * 4 * 8 + 2 * 64 * 16) + (32 * 56 * 4 + 32 * 8 * 8 + 2 * 32 * 16)
    assert bpw["resq"] == pytest.approx(resq_bits / n_w)
    assert bpw["resq"] == bpw["resq_random"] == bpw["resq_channels"] > bpw["rtn"] == bpw["rot4"] == bpw["spinquant"]
    assert all(r["test_bpc"] > 0 for r in rows)
    assert len(out["outliers"]) == 2 * 7
    # seeds in 2 spawned worker processes: the same rows as one process
    two = resq_quantize(ResQParams(n_draws=1, n_calib=8, workers=2), weights=weights, train_metrics=tm,
                        passages=_passages())
    assert two["results"].equals(out["results"]) and two["outliers"].equals(out["outliers"])


def _inputs(gain: float, kv: bool = False) -> dict:
    rows = []
    for seed, base in enumerate((2.0, 2.1, 2.05, 2.02, 2.08)):
        for arm, v in (("fp32", 0.0), ("rtn", 0.3), ("rot4", 0.12), ("resq_random", 0.1), ("resq_channels", 0.11),
                       ("uniform45", 0.09), ("resq", 0.1 - gain)):
            rows.append({"seed": seed, "arm": arm, "draw": -1, "bits_per_weight": 4.5, "test_bpc": base + v + 0.001 * seed})
        for d in range(2):
            rows.append({"seed": seed, "arm": "spinquant", "draw": d, "bits_per_weight": 4.1, "test_bpc": base + 0.1 + 0.002 * d})
            if kv:
                rows.append({"seed": seed, "arm": "spinquant_kv", "draw": d, "bits_per_weight": 4.1, "test_bpc": base + 0.2})
        if kv:
            rows.append({"seed": seed, "arm": "resq_kv", "draw": -1, "bits_per_weight": 4.5, "test_bpc": base + 0.2 - gain})
    out = [{"seed": 0, "layer": "model.layers.0.mlp.down_proj", "kurtosis": 30.0, "rms_ratio": 12.0}]
    return {"results": pa.Table.from_pylist(rows), "outliers": pa.Table.from_pylist(out),
            "train_metrics": {"n_params": 10, "test_bpc_mean": 2.0}}


def test_report_verdicts_follow_the_numbers():
    good = report_resq(ResQReportParams(), **_inputs(0.05))
    assert [c["verdict"] for c in good["claims"]["claims"]] == ["reproduced"] * 3 + ["not testable at this scale"]
    assert "1/1 linear inputs" in good["report"]
    bad = report_resq(ResQReportParams(), **_inputs(-0.01))
    assert [c["verdict"] for c in bad["claims"]["claims"]][:3] == ["not reproduced"] * 3
    kv = report_resq(ResQReportParams(), **_inputs(0.05, kv=True))["claims"]["claims"]
    assert kv[3]["claim"].endswith("W4A4KV4") and kv[3]["verdict"] == "reproduced"
    kv = report_resq(ResQReportParams(), **_inputs(-0.01, kv=True))["claims"]["claims"]
    assert kv[3]["verdict"] == "not reproduced"


@pytest.mark.parametrize("mutate,needle", [
    (lambda r: r["resq"]["quantize"].update(low_bits=0), "resq.quantize.low_bits"),
    (lambda r: r["resq"]["quantize"].update(rank_div=1000), "rank_div=1000 leaves no 8-bit subspace"),
    (lambda r: r["boa"]["quantize"].update(bits=[0, 3]), "bits must be distinct integers in"),
    (lambda r: r["boa"]["quantize"].update(group=48), "group size 48 does not divide the input width 128"),
])
def test_bad_params_are_named_before_any_work(tmp_path, mutate, needle):
    import yaml

    from flows.papers import discover
    from tasks.platform.errors import ParamsError
    from tasks.platform.params import DEFAULT_PARAMS, load_all

    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=needle):
        load_all({n: p.params_model for n, p in discover().items()}, "full", path)
