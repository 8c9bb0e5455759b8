"""Serving a quantized tinylm: KV-cache decoding equals the full forward, the serve core's bytes (hand
computed), parity with the fake-quant model through the native kernel, and its named errors."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from kernels.quant import impls
from models.charlm import VOCAB
from models.tinylm import TinyLM, TinyLMSpec
from tasks.quant.fakequant import WeightQuant
from tasks.quant.serving import SERVE_QUANT_SCHEMA, ServeQuantParams, decode_logits, generate, serve_tinylm
from tasks.quant.tinylm import CorpusParams, make_passages
from tasks.train import pack_seeds

SPEC = TinyLMSpec(d_model=32, n_heads=2, n_layers=2, d_ff=64, max_len=32)
TEXT = "".join(chr(97 + (i * 7 + i // 5) % 26) + (" " if i % 9 == 0 else "") for i in range(4000))


def _model(seed: int = 0) -> TinyLM:
    torch.manual_seed(seed)
    return TinyLM(SPEC).eval()


def test_cached_decoding_equals_the_full_forward():
    m = _model()
    tokens = torch.randint(0, VOCAB, (3, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = m(tokens)
        stepwise = decode_logits(m, tokens)
        cache = m.new_cache()  # prefill 5 tokens, then one at a time
        mixed = torch.cat([m(tokens[:, :5], cache)] + [m(tokens[:, t : t + 1], cache) for t in range(5, 12)], 1)
    torch.testing.assert_close(stepwise, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed, full, atol=1e-5, rtol=1e-5)
    assert cache.length == 12


def test_cache_errors_name_the_limit():
    m = _model()
    cache = m.new_cache()
    with torch.no_grad():
        m(torch.zeros(1, 30, dtype=torch.long), cache)
        with pytest.raises(ValueError, match="one new token per step"):
            m(torch.zeros(1, 2, dtype=torch.long), cache)
        for _ in range(2):  # positions 30 and 31: the last two RoPE rows
            m(torch.zeros(1, 1, dtype=torch.long), cache)
        with pytest.raises(ValueError, match="sequence length 33 > max_len 32"):
            m(torch.zeros(1, 1, dtype=torch.long), cache)


def test_generate_is_greedy_over_the_full_forward():
    m = _model()
    prompt = torch.randint(0, VOCAB, (2, 4), generator=torch.Generator().manual_seed(2))
    out = generate(m, prompt, 5)
    seq = prompt
    with torch.no_grad():
        for _ in range(5):  # reference: no cache, recompute everything each step
            seq = torch.cat([seq, m(seq)[:, -1].argmax(-1, keepdim=True)], 1)
    assert out.shape == (2, 5) and torch.equal(out, seq[:, 4:])


def _inputs():
    passages = make_passages(CorpusParams(passage_len=33, n_val=4, n_test=6, max_train=20), TEXT)
    weights = pack_seeds({s: _model(s).state_dict() for s in (0, 1)})
    return dict(weights=weights, train_metrics={"spec": SPEC.model_dump()}, passages=passages)


def test_serve_tinylm_bytes_parity_and_rows():
    params = ServeQuantParams(weight=WeightQuant(bits=4, group=32), batch_sizes=(1, 4), prompt_len=4,
                              new_tokens=6, repeats=1, n_calib=4)
    out = serve_tinylm(params, **_inputs())
    rows = out["results"].to_pylist()
    assert out["results"].schema == SERVE_QUANT_SCHEMA and len(rows) == 4  # 2 seeds x 2 batches
    # hand count: int4 codes (0.5 B) + one fp32 scale per 32 weights (0.125 B) = 0.625 B vs 4 B per weight
    n_lin = SPEC.n_layers * (4 * 32 * 32 + 3 * 32 * 64)
    assert rows[0]["fp32_linear_bytes"] == 4 * n_lin and rows[0]["quant_linear_bytes"] == n_lin * 5 // 8
    rest = rows[0]["fp32_bytes"] - 4 * n_lin
    assert rows[0]["quant_bytes"] == rest + n_lin * 5 // 8
    assert out["metrics"]["linear_bytes_ratio"] == pytest.approx(6.4)
    for r in rows:  # the kernel computes the fake-quantized weights exactly (fp32 summation order aside)
        assert r["parity_ok"] and r["max_abs_logit_diff"] <= 1e-3 and r["same_generation"] == 1.0
        assert r["quant_bpc"] == pytest.approx(r["fakequant_bpc"], abs=1e-4)
        assert r["quant_bpc"] != r["fp32_bpc"]  # the weights really were quantized
        assert r["fp32_ms_per_token"] > 0 and r["quant_chars_per_s"] > 0
    assert set(out["metrics"]["batches"]) == {"1", "4"}
    assert out["metrics"]["parity_ok"] is True


@pytest.mark.skipif(not impls()["native"].available(), reason="no C compiler")
def test_decode_steps_go_through_the_native_kernel():
    from kernels.native_build import has_avx512

    if not impls()["native"].available():
        pytest.skip("native impl not built")
    params = ServeQuantParams(batch_sizes=(1, 2), prompt_len=3, new_tokens=3, repeats=1, n_calib=4)
    out = serve_tinylm(params, **_inputs())  # auto: the native kernel where its vector paths exist
    # (on an AMX CPU native_amx from 2 rows: kernels.quant.native_amx.auto_min_batch)
    from kernels.quant import QuantWeight, select_impl

    q = QuantWeight.quantize(torch.randn(8, 64), bits=4, group=32)
    expect = {select_impl(q, torch.randn(b, 64)).name for b in (1, 2)}
    assert expect <= {"native", "native_amx"} if has_avx512() else expect == {"reference"}
    assert set(out["results"]["impl"].to_pylist()) == expect
    assert out["metrics"]["parity_ok"]


def test_serve_errors_name_the_setting():
    with pytest.raises(ValidationError, match="bits=3"):
        ServeQuantParams(weight=WeightQuant(bits=3, group=32))
    with pytest.raises(ValidationError, match="unknown quant impl .nope.; choose auto"):
        ServeQuantParams(impl="nope")
    with pytest.raises(ValueError, match="serve.batch_sizes: 7 > 6 test passages"):
        serve_tinylm(ServeQuantParams(batch_sizes=(7,), prompt_len=2, new_tokens=2), **_inputs())
    with pytest.raises(ValueError, match="prompt_len \\+ new_tokens = 40"):
        serve_tinylm(ServeQuantParams(batch_sizes=(1,), prompt_len=20, new_tokens=20), **_inputs())
