"""SpinQuant report: the outlier gate picks tinylm or the synthetic check; verdicts follow the numbers."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tasks.papers.spinquant import LEARNED_SCHEMA, SpinQuantReportParams, report_spinquant


def _inputs(rms_ratio: float, rot_gain: float, syn_gain: float, learn_gain: float | None = None,
            fp_diff: float = 1e-6) -> dict:
    rows, learned = [], []
    for seed, base in ((0, 2.0), (1, 2.1), (2, 2.05)):
        rows += [{"seed": seed, "arm": "fp32", "draw": -1, "test_bpc": base},
                 {"seed": seed, "arm": "rtn", "draw": -1, "test_bpc": base + 0.2 + 0.01 * seed},
                 {"seed": seed, "arm": "rtn_kv", "draw": -1, "test_bpc": base + 0.3}]
        for d in range(3):
            rows.append({"seed": seed, "arm": "orth", "draw": d, "test_bpc": base + 0.2 - rot_gain + 0.05 * d})
            rows.append({"seed": seed, "arm": "hadamard", "draw": d, "test_bpc": base + 0.2 - rot_gain + 0.001 * d})
            rows.append({"seed": seed, "arm": "hadamard_kv", "draw": d, "test_bpc": base + 0.25 - rot_gain + 0.001 * d})
        if learn_gain is not None:
            for arm, hb in (("learned", 0.2), ("learned_kv", 0.25)):
                rows.append({"seed": seed, "arm": arm, "draw": 0, "test_bpc": base + hb - rot_gain - learn_gain + 0.001 * seed})
                learned.append({"seed": seed, "arm": arm, "init": 0, "steps": 10, "calib_bpc_init": 2.3, "calib_bpc_final": 2.2,
                                "orth_err_r1": 1e-15, "orth_err_r2": 1e-15, "fp_logit_maxdiff": fp_diff, "wall_s": 1.0,
                                "cpu_s": 1.0})
    syn = [{"seed": s, "rotation": k, "n_outliers": n, "rel_error": e}
           for s in range(3) for n in (0, 4)
           for k, e in (("identity", 0.5 + 0.01 * s), ("orth", 0.5 - syn_gain + 0.01 * s), ("hadamard", 0.5 - syn_gain + 0.02 * s))]
    out = [{"seed": 0, "layer": "model.layers.0.mlp.down_proj", "kurtosis": 30.0, "rms_ratio": rms_ratio}]
    return {"results": pa.Table.from_pylist(rows), "outliers": pa.Table.from_pylist(out), "synthetic": pa.Table.from_pylist(syn),
            "train_metrics": {"n_params": 10, "test_bpc_mean": 2.0},
            "learned": pa.Table.from_pylist(learned, schema=LEARNED_SCHEMA)}


def _verdicts(**kw) -> tuple[list[str], str]:
    out = report_spinquant(SpinQuantReportParams(), **_inputs(**kw))
    return [c["verdict"] for c in out["claims"]["claims"]], out["claims"]["claims"][0]["claim"]


def test_learned_rotation_verdicts_follow_the_numbers():
    v, _ = _verdicts(rms_ratio=50.0, rot_gain=0.1, syn_gain=0.3, learn_gain=0.02)  # better than every draw
    assert v[2:] == ["reproduced"] * 4
    v, _ = _verdicts(rms_ratio=50.0, rot_gain=0.1, syn_gain=0.3, learn_gain=0.0005)  # ~ the mean draw, worse than the best
    assert v[2:4] == ["not reproduced"] * 2 and v[4] == "not reproduced"
    v, _ = _verdicts(rms_ratio=50.0, rot_gain=0.1, syn_gain=0.3, learn_gain=0.02, fp_diff=1e-2)  # not function-preserving
    assert v[5] == "not reproduced"
    out = report_spinquant(SpinQuantReportParams(), **_inputs(50.0, 0.1, 0.3, 0.02))
    assert "learned" in out["report"] and "Not built" not in out["report"]
    assert out["metrics"]["learned_gain_bpc"] == pytest.approx(0.02, abs=1e-9)  # mean draw +0.001, learned +0.001 * seed


@pytest.mark.parametrize("mutate,needle", [
    (lambda q: q.update(learn={"lr": -1.0}), "spinquant.quantize.learn.lr"),
    (lambda q: q.update(learn={"steps": -1}), "spinquant.quantize.learn.steps"),
    (lambda q: q.update(learn={"inits": 31}), "learn.inits=31 > n_draws=30"),
    (lambda q: q.update(kv_bits=1), "spinquant.quantize.kv_bits"),
])
def test_bad_learning_params_are_named_before_any_work(tmp_path, mutate, needle):
    import yaml

    from flows.papers import discover
    from tasks.platform.errors import ParamsError
    from tasks.platform.params import DEFAULT_PARAMS, load_all

    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    mutate(raw["spinquant"]["quantize"])
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=needle):
        load_all({n: p.params_model for n, p in discover().items()}, "full", path)


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


def test_seeds_quantized_in_worker_processes_match_one_process():
    """``workers`` quantizes model seeds in spawned processes: the same rows as one process, the same cache key."""
    import torch

    from flows.papers import get_paper
    from models.tinylm import TinyLM, TinyLMSpec
    from tasks.papers.spinquant import LearnParams, SpinQuantParams, SyntheticParams, spinquant_quantize
    from tasks.train import pack_seeds

    spec = TinyLMSpec(d_model=16, n_heads=2, n_layers=1, d_ff=32, max_len=16)
    sds = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        sds[seed] = TinyLM(spec).state_dict()
    text = "the quick brown fox jumps over the lazy dog. " * 20
    passages = pa.Table.from_pylist([{"split": sp, "text": text[i:i + 17]} for sp, n in (("train", 8), ("test", 4))
                                     for i in range(0, 17 * n, 17)])
    base = SpinQuantParams(n_draws=2, n_calib=4, learn=LearnParams(steps=1, batch_size=2, n_calib=4),
                           synthetic=SyntheticParams(n=16, d=16, out=4, seeds=(0, 1)), threads=1)
    kw = {"weights": pack_seeds(sds), "train_metrics": {"spec": spec.model_dump()}, "passages": passages}
    one = spinquant_quantize(base, **kw)
    two = spinquant_quantize(base.model_copy(update={"workers": 2}), **kw)
    assert one["results"].equals(two["results"]) and one["outliers"].equals(two["outliers"])
    drop = ("wall_s", "cpu_s")  # timings differ run to run
    assert one["learned"].drop_columns(list(drop)).equals(two["learned"].drop_columns(list(drop)))
    digest = get_paper("spinquant").stage("quantize").params_digest
    p0 = get_paper("spinquant").params_model()
    p1, p2 = (p0.model_copy(update={"quantize": q}) for q in (base, base.model_copy(update={"workers": 2})))
    assert digest(p1) == digest(p2)
