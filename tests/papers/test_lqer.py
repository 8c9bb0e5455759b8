"""LQER / L2QER: exact reconstruction of a low-rank error, the activation scale, bad params, report verdicts."""

from __future__ import annotations

import pyarrow as pa
import pytest
import torch

from tasks.papers.lqer import LQERParams, LQERReportParams, report_lqer
from tasks.quant.lqer import activation_scale, lqer_factors, quant_factors, top_share


@pytest.mark.parametrize("scaled", [False, True])
def test_low_rank_error_is_reconstructed_exactly(scaled):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(24, 40, dtype=torch.float64, generator=g)  # nn.Linear layout (out, in)
    e = torch.randn(24, 3, dtype=torch.float64, generator=g) @ torch.randn(3, 40, dtype=torch.float64, generator=g)
    s = torch.rand(40, dtype=torch.float64, generator=g) + 0.1 if scaled else None
    a, b, sv = lqer_factors(w, w - e, 3, s)
    assert a.shape == (40, 3) and b.shape == (3, 24)
    assert (a @ b - e.T).abs().max() < 1e-10  # x (W - E)^T + x A B = x W^T
    assert sv[3:].abs().max() < 1e-10


def test_rank_and_scale():
    with pytest.raises(ValueError, match="rank 9 must be in"):
        lqer_factors(torch.randn(8, 16), torch.zeros(8, 16), 9, None)
    x = torch.tensor([[1.0, -2.0, 8.0], [-1.0, 2.0, 0.0], [3.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    s = activation_scale(x, 2)  # batch means |x|: [1, 2, 4], [2, 0, 0] -> running max [2, 2, 4] -> / sqrt(2 * 4)
    torch.testing.assert_close(s, torch.tensor([2, 2, 4], dtype=torch.float64) / 8**0.5)
    assert top_share(torch.tensor([3.0, 1.0, 0.0]), 1) == pytest.approx(0.9)
    a, b, bits = quant_factors(torch.randn(16, 2), torch.randn(2, 8), 8)
    assert bits == (2 * 16 * 8 + 2 * 16) + (8 * 2 * 8 + 8 * 16)


def test_bad_ranks():
    with pytest.raises(ValueError, match="ranks"):
        LQERParams(ranks=(4, 4))
    with pytest.raises(ValueError, match="ranks"):
        LQERParams(ranks=(0, 4))


def _results(l2_gain: float) -> dict:
    rows = []
    for seed, base in ((0, 2.0), (1, 2.1), (2, 2.05)):
        def row(arm, method, rank, bpw, bpc):
            rows.append({"seed": seed, "arm": arm, "method": method, "rank": rank, "bits_per_weight": bpw, "test_bpc": bpc})
        row("fp32", "fp32", 0, 32.0, base)
        row("rtn", "rtn", 0, 5.0, base + 0.1)
        row("gptq", "gptq", 0, 5.0, base + 0.07)
        row("lqer_k4", "lqer", 4, 5.5, base + 0.06 + 0.001 * seed)
        row("l2qer_k4", "l2qer", 4, 5.5, base + 0.1 - l2_gain + 0.001 * seed)
        row("rtn_eqbits_k4", "rtn_w6", 4, 7.0, base + 0.05)
        row("gptq_l2qer_k4", "gptq_l2qer", 4, 5.5, base + 0.01)
    svd = [{"seed": s, "layer": f"l{i}", "rank": 4, "share_scaled": 0.6, "share_plain": 0.5} for s in range(3) for i in range(7)]
    out = [{"seed": 0, "layer": "l0", "kurtosis": 3.1, "rms_ratio": 2.0}]
    tm = {"n_params": 1000, "spec": {"n_layers": 1, "d_model": 32}, "train_s_mean": 1.0, "test_bpc_mean": 2.0}
    return {"results": pa.Table.from_pylist(rows), "svd": pa.Table.from_pylist(svd), "outliers": pa.Table.from_pylist(out),
            "train_metrics": tm, "metrics": {"weight_bits": 4, "act_bits": 8, "weight_group": 16}}


def test_report_verdicts_follow_the_numbers():
    good = report_lqer(LQERReportParams(), **_results(0.095))
    verdicts = [c["verdict"] for c in good["claims"]["claims"]]
    assert verdicts[:4] == ["reproduced"] * 4, good["report"]
    bad = report_lqer(LQERReportParams(), **_results(0.02))  # recovers 20 %, worse than LQER and the control
    verdicts = [c["verdict"] for c in bad["claims"]["claims"]]
    assert verdicts[1:4] == ["not reproduced"] * 3
    assert "0/1 linear inputs" in good["report"]


@pytest.mark.parametrize("mutate,needle", [
    (lambda r: r["lqer"]["quantize"]["weight"].update(bits=0), "lqer.quantize.weight.bits"),
    (lambda r: r["lqer"]["quantize"]["weight"].update(bits=17), "lqer.quantize.weight.bits"),
    (lambda r: r["lqer"]["quantize"]["weight"].update(group=48), "group size 48 does not divide the input width 128"),
    (lambda r: r["lqer"]["quantize"].update(ranks=[4, 256]), "rank 256 > the smallest linear width 128"),
    (lambda r: r["lqer"]["train"]["model"].update(n_heads=3), "n_heads=3"),
    (lambda r: r["spinquant"]["quantize"]["weight"].update(group=100), "group size 100 does not divide"),
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
    with pytest.raises(ParamsError, match=needle.replace("(", r"\(")):
        load_all({n: p.params_model for n, p in discover().items()}, "full", path)
