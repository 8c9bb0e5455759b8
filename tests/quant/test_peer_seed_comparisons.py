"""bench_quant_peers' seed comparisons (ours vs the peer's equivalent, paired over model seeds): the reading
follows the CI, pairs are matched by seed, and one seed gives no CI. Needs no peer package."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[2]


def _module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    with mock.patch.dict(os.environ):  # the bench pins thread counts in os.environ at import
        return importlib.import_module("bench_quant_peers")


def _seed(seed: int, gptq: float, rtn: float, hqq: float, l2qer: float, brev: float) -> dict:
    return {"seed": seed,
            "hqq": {"rows": [{"bits": 3, "group": 32, "gptq": {"bpc": gptq}, "rtn": {"bpc": rtn}, "hqq": {"bpc": hqq}}]},
            "lowrank": {"bits": 3, "group": 32, "rows": [
                {"arm": "rtn", "rank": 0, "bpc": rtn},
                {"arm": "lqer", "rank": 8, "bpc": l2qer + 0.001},
                {"arm": "l2qer", "rank": 8, "bpc": l2qer},
                {"arm": "brevitas_svd_residual", "rank": 8, "bpc": brev}]}}


def test_readings_follow_the_paired_ci():
    bq = _module()
    # GPTQ below HQQ on every seed, RTN above it on every seed, L2QER and brevitas within noise of each other
    per_seed = [_seed(s, 2.95 + 0.01 * s, 2.99 + 0.01 * s, 2.97 + 0.01 * s, 2.96 + 0.01 * s + d, 2.96 + 0.01 * s)
                for s, d in zip(range(5), (0.002, -0.002, 0.001, -0.001, 0.0))]
    by = {c["name"]: c for c in bq.seed_comparisons(per_seed)}
    assert by["w3_g32_gptq_vs_hqq"]["reading"] == "ours better"
    assert abs(by["w3_g32_gptq_vs_hqq"]["ours_minus_peer"] + 0.02) < 1e-9
    assert by["w3_g32_gptq_vs_hqq"]["seeds_ours_lower"] == 5
    assert by["w3_g32_rtn_vs_hqq"]["reading"] == "peer better"
    assert by["w3_k8_l2qer_vs_brevitas_svd"]["reading"] == "within CI"
    assert by["w3_k8_l2qer_vs_brevitas_svd"]["n"] == 5
    assert set(by) == {"w3_g32_gptq_vs_hqq", "w3_g32_rtn_vs_hqq", "w3_k8_lqer_vs_brevitas_svd",
                       "w3_k8_l2qer_vs_brevitas_svd"}


def test_one_seed_has_no_ci():
    bq = _module()
    (c, *_) = bq.seed_comparisons([_seed(0, 2.95, 2.99, 2.97, 2.96, 2.96)])
    assert c["n"] == 1 and c["reading"] == "one seed: no CI"
