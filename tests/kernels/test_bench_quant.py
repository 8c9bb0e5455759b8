"""bench_quant smoke: records carry the fields the report uses; bad variants exit 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_quant  # noqa: E402


def test_smoke_profile_writes_records(tmp_path):
    out = tmp_path / "q.json"
    rc = bench_quant.main(["--profile", "smoke", "--variants", "int4_g32,nm24_int4_g32,torch_int4pack",
                           "--threads", "1", "--no-mlflow", "--out", str(out)])
    assert rc == 0
    payload = json.loads(out.read_text())
    recs = payload["records"]
    assert {r["variant"] for r in recs} == {"int4_g32", "nm24_int4_g32", "torch_int4pack"}
    assert {r["mode"] for r in recs} == {"cold", "warm"}
    for r in recs:
        assert r["speedup"] > 0 and 0 < r["fraction_of_byte_limit"]
        assert r["bytes_moved"] < r["bytes_moved_dense"]
        if r["max_abs_err_vs_dequantized"] is not None:
            assert r["max_abs_err_vs_dequantized"] < 1e-3
    cold = [r for r in recs if r["mode"] == "cold"]
    assert all(r["copies"] * r["weight_bytes"] >= bench_quant.COLD_FACTOR * r["llc_bytes"]
               or r["copies"] == bench_quant.MAX_COPIES for r in cold)


def test_unknown_variant_exits_2(capsys):
    assert bench_quant.main(["--variants", "int3", "--no-mlflow"]) == 2
    assert "unknown ['int3']" in capsys.readouterr().err


def test_cold_copies_span_the_llc_within_the_memory_budget():
    mib = 1 << 20
    llc = 300 * mib  # the 300 MiB LLC that ran 13 variants x 1.2 GB out of memory
    assert bench_quant.cold_copies(180 * mib, llc, 10 << 30) == 7  # 7 x 180 MiB >= 4 LLCs
    assert bench_quant.cold_copies(25 * mib, llc, 10 << 30) == 48  # 48 x 25 MiB >= 4 LLCs
    assert bench_quant.cold_copies(5 * mib, llc, 10 << 30) == bench_quant.MAX_COPIES
    assert bench_quant.cold_copies(180 * mib, llc, 700 * mib) == 3  # the memory cap binds
    assert bench_quant.cold_copies(180 * mib, llc, 10 * mib) == 1  # never zero copies
