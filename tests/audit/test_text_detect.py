"""Tests for models/charlm.py and tasks/audit/text_detect.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.charlm import ALPHABET, CharLM, CharLMSpec, decode, encode
from tasks.train import torch_threads
from tasks.audit import text_detect as td

TEXTS = ["def f(x):\n    return x + 1  # add", "The quick brown fox jumps over it"]
TEXTS = [t[:30] for t in TEXTS]


@pytest.fixture(scope="module")
def lms():
    torch.manual_seed(0)
    return CharLM(CharLMSpec(d_embed=8, hidden=16)), CharLM(CharLMSpec(d_embed=8, hidden=12))


def test_encode_decode_roundtrip_and_bad_char() -> None:
    assert decode(encode(TEXTS[0])) == TEXTS[0]
    with pytest.raises(ValueError, match="outside the LM alphabet"):
        encode("caf\u00e9")


def test_corpus_is_clean_and_passages_disjoint() -> None:
    text = td.corpus_text()
    assert len(text) > 400_000 and set(text) <= set(ALPHABET)
    ps = td.passages(text, 64, seed=0)
    assert len(ps) == len(text) // 64 and len(set(ps)) > 0.99 * len(ps)
    assert all(len(p) == 64 for p in ps)


def test_fast_detectgpt_analytic_matches_sampling_form(lms) -> None:
    target, other = lms
    s = td.text_statistics(TEXTS, target, other)
    # Sampling form (Bao et al. 2024): draw x~_t ~ p(. | x_<t) independently per position.
    lp = td.token_logprobs(target, TEXTS)  # (B, T-1, V)
    obs = lp.gather(-1, torch.stack([encode(t) for t in TEXTS])[:, 1:, None])[..., 0].sum(1)
    g = torch.Generator().manual_seed(0)
    draws = torch.multinomial(lp.exp().reshape(-1, lp.shape[-1]), 20000, replacement=True, generator=g)
    ll = lp.reshape(-1, lp.shape[-1]).gather(1, draws).reshape(lp.shape[0], lp.shape[1], -1).sum(1)  # (B, S)
    d_sampling = ((obs[:, None] - ll.mean(1, keepdim=True)) / ll.std(1, keepdim=True))[:, 0]
    np.testing.assert_allclose(s["fast_detectgpt"], d_sampling.numpy(), rtol=0.03, atol=0.03)


def test_statistics_by_definition(lms) -> None:
    target, other = lms
    s = td.text_statistics(TEXTS, target, target)  # performer = observer
    lp = td.token_logprobs(target, TEXTS)
    tok = torch.stack([encode(t) for t in TEXTS])[:, 1:]
    obs = lp.gather(-1, tok[..., None])[..., 0]
    ent = -(lp.exp() * lp).sum(-1)
    np.testing.assert_allclose(s["likelihood"], obs.mean(1).numpy())
    np.testing.assert_allclose(s["entropy"], -ent.mean(1).numpy())
    # with M2 = M1 the cross-perplexity is the entropy: B = mean NLL / mean H
    np.testing.assert_allclose(s["binoculars"], -((-obs.mean(1)) / ent.mean(1)).numpy())
    np.testing.assert_allclose(s["reference"], 0.0, atol=1e-12)
    assert set(s) == set(td.ORIGIN) and all(v.shape == (2,) for v in s.values())


def test_log_rank_zero_for_greedy_text(lms) -> None:
    target, _ = lms
    prompt = encode("d")[None]  # every later token is the argmax
    toks = [prompt]
    with torch.no_grad():
        logits, state = target(prompt)
        for _ in range(20):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            toks.append(nxt)
            logits, state = target(nxt, state)
    text = decode(torch.cat(toks, 1)[0])
    s = td.text_statistics([text], target, target)
    assert s["log_rank"][0] == pytest.approx(0.0, abs=1e-12)


def test_sampling_shapes_and_temperature_error(lms) -> None:
    target, _ = lms
    out = td.sample_texts(target, ["ab", "cd"], 10, 1.0, seed=0)
    assert [len(o) for o in out] == [12, 12] and out[0].startswith("ab")
    with pytest.raises(ValueError, match="temperature"):
        td.sample_texts(target, ["ab"], 3, 0.0, seed=0)


def test_transfer_audit_smoke() -> None:
    p = td.TextDetectParams(
        passage_len=48, n_members=40, n_nonmembers=40, n_human=40, n_reference=80, prompt_len=8,
        target_lm=CharLMSpec(d_embed=16, hidden=64), other_lm=CharLMSpec(d_embed=16, hidden=32),
        steps=150, batch_size=20, lr=1e-2, n_boot=50,
    )
    with torch_threads(1):
        out = td.text_detection_audit(p)
    rows = {r["statistic"]: r for r in out["transfer"].to_pylist()}
    assert set(rows) == set(td.ORIGIN)
    assert rows["likelihood"]["mia_auc_lo"] > 0.6  # 40 passages seen ~75 times each: memorised
    for r in rows.values():
        assert r["mia_auc_lo"] <= r["mia_auc"] <= r["mia_auc_hi"]
        assert r["det_auc_lo"] <= r["det_auc"] <= r["det_auc_hi"]
    assert -1 <= out["summary"]["spearman_rho"] <= 1
    with pytest.raises(ValueError, match="the params need"):
        td.text_detection_audit(p, corpus=["x" * 48] * 10)
