"""SpinQuant report: the outlier gate picks tinylm or the synthetic check; verdicts follow the numbers."""

from __future__ import annotations

import pyarrow as pa

from tasks.papers.spinquant import SpinQuantReportParams, report_spinquant


def _inputs(rms_ratio: float, rot_gain: float, syn_gain: float) -> dict:
    rows = []
    for seed, base in ((0, 2.0), (1, 2.1), (2, 2.05)):
        rows += [{"seed": seed, "arm": "fp32", "draw": -1, "test_bpc": base},
                 {"seed": seed, "arm": "rtn", "draw": -1, "test_bpc": base + 0.2 + 0.01 * seed}]
        for d in range(3):
            rows.append({"seed": seed, "arm": "orth", "draw": d, "test_bpc": base + 0.2 - rot_gain + 0.05 * d})
            rows.append({"seed": seed, "arm": "hadamard", "draw": d, "test_bpc": base + 0.2 - rot_gain + 0.001 * d})
    syn = [{"seed": s, "rotation": k, "n_outliers": n, "rel_error": e}
           for s in range(3) for n in (0, 4)
           for k, e in (("identity", 0.5 + 0.01 * s), ("orth", 0.5 - syn_gain + 0.01 * s), ("hadamard", 0.5 - syn_gain + 0.02 * s))]
    out = [{"seed": 0, "layer": "model.layers.0.mlp.down_proj", "kurtosis": 30.0, "rms_ratio": rms_ratio}]
    return {"results": pa.Table.from_pylist(rows), "outliers": pa.Table.from_pylist(out), "synthetic": pa.Table.from_pylist(syn),
            "train_metrics": {"n_params": 10, "test_bpc_mean": 2.0}}


def _verdicts(**kw) -> tuple[list[str], str]:
    out = report_spinquant(SpinQuantReportParams(), **_inputs(**kw))
    return [c["verdict"] for c in out["claims"]["claims"]], out["claims"]["claims"][0]["claim"]


def test_outliers_present_tinylm_decides():
    v, claim = _verdicts(rms_ratio=50.0, rot_gain=0.1, syn_gain=-0.1)  # the synthetic check would say no
    assert v == ["reproduced", "reproduced"] and "synthetic" not in claim
    v, _ = _verdicts(rms_ratio=50.0, rot_gain=-0.01, syn_gain=0.3)
    assert v[0] == "not reproduced"


def test_no_outliers_synthetic_check_decides():
    v, claim = _verdicts(rms_ratio=2.0, rot_gain=-0.01, syn_gain=0.3)  # tinylm gets worse, but has no outliers
    assert v[0] == "reproduced" and "synthetic layer check" in claim
    v, _ = _verdicts(rms_ratio=2.0, rot_gain=0.1, syn_gain=-0.1)
    assert v[0] == "not reproduced"
