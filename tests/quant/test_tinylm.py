"""tinylm: HF Llama names, causality, RoPE, training + bits/char, outlier statistics, quantized execution."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from models.charlm import VOCAB
from models.tinylm import TinyLM, TinyLMSpec, rotate_half, rope_tables
from tasks.quant.fakequant import WeightQuant
from tasks.quant.tinylm import (
    FakeQuantLinear,
    TinyLMTrainParams,
    bits_per_char,
    capture_inputs,
    fit_tinylm,
    outlier_stats,
    quantize_weights,
    swap_linears,
)

SPEC = TinyLMSpec(d_model=32, n_heads=2, n_layers=2, d_ff=64, max_len=32)


def test_parameter_names_are_hf_llama():
    names = set(TinyLM(SPEC).state_dict())
    expected = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
    for i in range(2):
        p = f"model.layers.{i}."
        expected |= {p + "input_layernorm.weight", p + "post_attention_layernorm.weight"}
        expected |= {p + f"self_attn.{n}_proj.weight" for n in "qkvo"}
        expected |= {p + f"mlp.{n}_proj.weight" for n in ("gate", "up", "down")}
    assert names == expected
    sd = TinyLM(SPEC).state_dict()
    assert sd["lm_head.weight"].shape == (VOCAB, 32) and sd["model.layers.0.mlp.down_proj.weight"].shape == (32, 64)
    assert sd["lm_head.weight"].data_ptr() != sd["model.embed_tokens.weight"].data_ptr()  # untied


def test_causal_and_position_aware():
    torch.manual_seed(0)
    m = TinyLM(SPEC).eval()
    x = torch.randint(0, VOCAB, (2, 12))
    y = x.clone()
    y[:, 8:] = (y[:, 8:] + 1) % VOCAB
    with torch.no_grad():
        a, b = m(x), m(y)
    assert torch.allclose(a[:, :8], b[:, :8], atol=1e-6)  # the future does not leak
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_rope_is_a_rotation_whose_dot_products_depend_on_offset_only():
    cos, sin = rope_tables(8, 16, 10000.0)
    q, k = torch.randn(8), torch.randn(8)
    rot = lambda v, p: v * cos[p] + rotate_half(v) * sin[p]  # noqa: E731
    assert torch.allclose(rot(q, 5).norm(), q.norm(), atol=1e-5)
    assert torch.allclose(rot(q, 7) @ rot(k, 3), rot(q, 6) @ rot(k, 2), atol=1e-5)


def test_bad_spec_and_length():
    with pytest.raises(ValidationError, match="n_heads"):
        TinyLMSpec(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="max_len"):
        TinyLM(SPEC)(torch.zeros(1, 40, dtype=torch.long))


def test_training_lowers_bits_per_char():
    text = ("the quick brown fox jumps over the lazy dog. " * 40)
    data = torch.stack([torch.tensor([ord(c) - 31 for c in text[i : i + 25]]) for i in range(0, 900, 25)])
    params = TinyLMTrainParams(model=SPEC, seeds=(0,), steps=60, warmup=5, batch_size=8, lr=0.01)
    before = bits_per_char(TinyLM(SPEC), data)
    model, curve = fit_tinylm(params, data, 0)
    after = bits_per_char(model, data)
    assert before > math.log2(VOCAB) - 0.5 and after < 0.5 * before, (before, after)
    assert len(curve) >= 2


def test_outlier_stats():
    torch.manual_seed(0)
    x = torch.randn(20000, 16)
    s = outlier_stats(x)
    assert s["kurtosis"] == pytest.approx(3.0, abs=0.1) and s["rms_ratio"] < 1.2
    x[:, 3] *= 50
    s = outlier_stats(x)
    assert s["rms_ratio"] == pytest.approx(50, rel=0.1) and s["kurtosis"] > 10


def test_capture_quantize_and_swap():
    torch.manual_seed(0)
    m = TinyLM(SPEC).eval()
    calib = torch.randint(0, VOCAB, (4, 17))
    xs = capture_inputs(m, calib, ["model.layers.1.mlp.down_proj"])
    assert xs["model.layers.1.mlp.down_proj"].shape == (4 * 16, 64)
    with pytest.raises(ValueError, match="no layer 'model.layers.5.mlp.up_proj'"):
        capture_inputs(m, calib, ["model.layers.5.mlp.up_proj"])
    with pytest.raises(ValueError, match="unknown weight quantization method 'awq'"):
        quantize_weights(m, calib, WeightQuant(), "awq")
    for method in ("rtn", "gptq"):
        q = quantize_weights(m, calib, WeightQuant(bits=8, group=16), method)
        assert set(q) == set(m.linear_names())
        qm = swap_linears(m, {n: FakeQuantLinear(q[n].dequant) for n in q})
        with torch.no_grad():
            assert torch.allclose(qm(calib), m(calib), atol=5e-3)  # 8-bit: close to fp
        assert isinstance(m.model.layers[0].mlp.down_proj, torch.nn.Linear)  # the input model is untouched


def test_quantization_papers_share_one_corpus_and_one_set_of_tinylm_seeds():
    """``prepare``/``train`` are shared stages: with equal data/train sections (every profile of the four
    papers) the tinylm seeds are trained once and the other papers reuse them from ``store/_shared``."""
    from flows.papers import discover, get_paper
    from tasks.platform.params import load_all
    from tasks.platform.stage import resolve_inputs, run_stage

    models = {n: p.params_model for n, p in discover().items()}
    for profile in ("smoke", "full"):  # the sections really are equal in params.yaml
        params = load_all(models, profile)
        assert len({params[n].data for n in ("lqer", "spinquant", "resq", "boa")}) == 1, profile
        assert len({params[n].train for n in ("lqer", "spinquant", "resq", "boa")}) == 1, profile
    smoke = load_all(models, "smoke")
    runs = {}
    for name in ("lqer", "boa"):
        paper, results = get_paper(name), {}
        for st in paper.stages[:2]:
            results[st.name] = run_stage(paper, st, smoke[name], resolve_inputs(st, results))
        runs[name] = results["train"]
    assert runs["boa"].reused and runs["boa"].paper == "boa"
    assert runs["boa"].outputs == runs["lqer"].outputs and "_shared" in runs["boa"].outputs["weights"]["path"]


def test_seeds_trained_in_worker_processes_are_identical_and_share_the_key():
    """``workers`` runs seeds in spawned processes: same weights and bits/char as one process, same cache key."""
    import pyarrow as pa

    from flows.papers import get_paper
    from tasks.quant.tinylm import train_tinylm

    text = "the quick brown fox jumps over the lazy dog. " * 40
    rows = [{"split": sp, "text": text[i:i + 17]} for sp, n in (("train", 24), ("val", 4), ("test", 4))
            for i in range(0, 17 * n, 17)]
    passages = pa.Table.from_pylist(rows)
    base = TinyLMTrainParams(model=TinyLMSpec(d_model=16, n_heads=2, n_layers=1, d_ff=32, max_len=16),
                             seeds=(0, 1), steps=4, warmup=1, batch_size=4)
    one = train_tinylm(base, passages=passages)
    two = train_tinylm(base.model_copy(update={"workers": 2}), passages=passages)
    w1, w2 = one["weights"], two["weights"]
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    for seed in ("0", "1"):
        assert one["metrics"]["seeds"][seed]["test_bpc"] == two["metrics"]["seeds"][seed]["test_bpc"]
    train = get_paper("lqer").stage("train")
    digest = train.params_digest
    p0 = get_paper("lqer").params_model()
    p1, p2, p3 = (p0.model_copy(update={"train": t}) for t in (
        base, base.model_copy(update={"workers": 2}), base.model_copy(update={"steps": 5})))
    assert digest(p1) == digest(p2) != digest(p3)
