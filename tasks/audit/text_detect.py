"""Machine-text detection vs membership inference on small character LMs.

Seed: Koike, Dugan, Kaneko, Callison-Burch, Okazaki 2025, "Machine Text Detectors are
Membership Inference Attacks" (arXiv 2510.19492): statistics built for one task transfer
to the other (cross-task rank correlation rho > 0.6), because both ask "is this text
unusually likely under the model?". We score the same texts with every statistic and
report each one's AUC on both tasks, the transfer table.

Every statistic is oriented so that **higher = machine-generated = member**:

* ``likelihood`` (= the LOSS attack): mean_t log p(x_t | x_<t).
* ``log_rank`` (Solaiman et al. 2019; Mitchell et al. 2023 baseline): -mean_t log rank(x_t),
  rank 1-indexed.
* ``entropy`` (Gehrmann et al. 2019 baseline): -mean_t H(p(. | x_<t)). Its sign is
  data-dependent (Fast-DetectGPT's tables have AUROC < 0.5); reported as-is, never flipped.
* ``fast_detectgpt`` (Bao et al. 2024, Eq. 3, analytic white-box form, q = p):
  D = (sum_t log p(x_t) - sum_t mu_t) / sqrt(sum_t sigma_t^2), with
  mu_t = sum_v p(v) log p(v), sigma_t^2 = sum_v p(v) (log p(v))^2 - mu_t^2.
* ``binoculars`` (Hans et al. 2024, Eq. 3): B = log PPL_M1(x) / log X-PPL_{M1,M2}(x) with
  log PPL = mean token cross-entropy under the observer M1 and
  log X-PPL = mean_t -sum_v M1(v | x_<t) log M2(v | x_<t) (performer M2); score = -B.
  Assumption: the paper's version (PPL under the observer), not the released code's
  (performer; Binoculars issue #27). Observer = the audited LM, performer = the other LM.
* ``min_k`` (Shi et al. 2024), ``zlib`` (Carlini et al. 2021): from :mod:`tasks.audit.mia`.
* ``min_k_pp`` (Zhang et al. 2025, Min-K%++): z_t = (log p(x_t) - mu_t) / sigma_t, mean of
  the lowest 20 % of z_t (the per-token term of Fast-DetectGPT, see anchors sec. 2.4).
* ``reference`` (Carlini et al. 2021 / MINT "Reference"): log-likelihood under the target
  minus under a reference LM trained on disjoint text.

Corpus: Python's ``pydoc_data.topics`` plus docstrings of a fixed list of standard-library
modules (ships offline), cut into equal-length passages.
"""

from __future__ import annotations

import time
from typing import Annotated

import numpy as np
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats
from torch.nn import functional as F

from models.charlm import CharLM, CharLMSpec, decode, encode
from tasks.audit import mia
from tasks.data_prep import corpus_text
from tasks.platform.params import Limit, Seed
from tasks.train import torch_threads

# PAPER: statistic -> the literature it comes from (the transfer table's "origin" column)
ORIGIN = {
    "likelihood": "both (LOSS / likelihood)",
    "log_rank": "detector",
    "entropy": "detector",
    "fast_detectgpt": "detector",
    "binoculars": "detector",
    "min_k": "mia",
    "min_k_pp": "mia",
    "zlib": "mia",
    "reference": "mia",
}


# ---------------------------------------------------------------------------------------
# PLATFORM: corpus
# ---------------------------------------------------------------------------------------


def passages(text: str, length: int, seed: int) -> list[str]:
    """Non-overlapping ``length``-character passages in a seeded random order."""
    n = len(text) // length
    order = np.random.default_rng(seed).permutation(n)
    return [text[i * length : (i + 1) * length] for i in order]


# ---------------------------------------------------------------------------------------
# PLATFORM: LM training and sampling
# ---------------------------------------------------------------------------------------


def train_lm(spec: CharLMSpec, texts: list[str], steps: int, batch_size: int, lr: float, seed: int) -> tuple[CharLM, list[float]]:
    """Train a :class:`CharLM` by next-character cross-entropy on whole passages.

    Assumption: the shared Lightning ``fit`` trains classifiers on ``id,label,x`` tables; a
    sequence LM does not fit that schema, so this is a plain Adam loop (same seeding rules).
    Returns the model and the loss every 50 steps.
    """
    torch.manual_seed(seed)
    model = CharLM(spec)
    data = torch.stack([encode(t) for t in texts])  # (N, T)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    curve = []
    model.train()
    for step in range(steps):
        batch = data[torch.randint(0, len(data), (batch_size,), generator=g)]
        logits, _ = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            curve.append(float(loss.detach()))
    model.eval()
    return model, curve


def sample_texts(model: CharLM, prompts: list[str], length: int, temperature: float, seed: int) -> list[str]:
    """Continue each prompt to ``len(prompt) + length`` characters."""
    tok = torch.stack([encode(p) for p in prompts])
    out = model.sample(tok, length, temperature, torch.Generator().manual_seed(seed))
    return [decode(row) for row in out]


# ---------------------------------------------------------------------------------------
# PAPER: per-token quantities and the statistics
# ---------------------------------------------------------------------------------------


@torch.no_grad()
def token_logprobs(model: CharLM, texts: list[str]) -> torch.Tensor:
    """log p(. | x_<t) for t = 1..T-1: float64 (B, T-1, V) (equal-length texts)."""
    tok = torch.stack([encode(t) for t in texts])
    logits, _ = model(tok[:, :-1])
    return torch.log_softmax(logits.double(), -1)


def text_statistics(texts: list[str], target: CharLM, other: CharLM, k: float = 0.2) -> dict[str, np.ndarray]:
    """Every statistic of :data:`ORIGIN` for each text, (n,) each, higher = machine/member."""
    tok = torch.stack([encode(t) for t in texts])[:, 1:]  # observed next tokens (B, T-1)
    lp = token_logprobs(target, texts)  # (B, T-1, V)
    lp_o = token_logprobs(other, texts)
    p = lp.exp()
    obs = lp.gather(-1, tok[..., None])[..., 0]  # log p(x_t) (B, T-1)
    mu = (p * lp).sum(-1)  # E_p[log p] = -H_t
    var = (p * lp.square()).sum(-1) - mu.square()
    rank = (lp > obs[..., None]).sum(-1) + 1  # 1-indexed rank of the observed token
    obs_o = lp_o.gather(-1, tok[..., None])[..., 0]
    x_ent = -(p * lp_o).sum(-1)  # cross-entropy observer p vs performer
    z = (obs - mu) / var.clamp_min(1e-12).sqrt()
    out = {
        "likelihood": obs.mean(1),
        "log_rank": -rank.double().log().mean(1),
        "entropy": mu.mean(1),
        "fast_detectgpt": (obs.sum(1) - mu.sum(1)) / var.sum(1).clamp_min(1e-12).sqrt(),
        "binoculars": -((-obs.mean(1)) / x_ent.mean(1)),
        "reference": obs.mean(1) - obs_o.mean(1),
    }
    out = {name: v.numpy() for name, v in out.items()}
    obs_np = obs.numpy()
    out["min_k"] = mia.run_attack("min_k", mia.AttackInputs(token_logprobs=list(obs_np)), k=k)
    out["min_k_pp"] = np.array([mia.min_k_mean(row, k) for row in z.numpy()])
    out["zlib"] = mia.run_attack("zlib", mia.AttackInputs(token_logprobs=list(obs_np), texts=texts))
    return {name: out[name] for name in ORIGIN}


# ---------------------------------------------------------------------------------------
# PLATFORM: the audit core
# ---------------------------------------------------------------------------------------


class TextDetectParams(BaseModel):
    """Params of the text-detection / MIA transfer audit.

    Attributes:
        passage_len: characters per passage (human text, members, non-members).
        n_members: passages the target LM trains on (MIA members).
        n_nonmembers: held-out passages (MIA non-members).
        n_human: held-out passages used as human text; as many machine texts are sampled.
        n_reference: disjoint passages the second (reference / performer) LM trains on.
        prompt_len: machine texts continue the first ``prompt_len`` characters of a
            held-out passage (prompts from passages used nowhere else).
        temperature: sampling temperature of the machine texts.
        target_lm, other_lm: sizes of the two LMs (the audited one and the second one).
        steps, batch_size, lr: LM training.
        k: Min-K% fraction.
        n_boot: bootstrap replicates for the AUC and Spearman CIs.
        seed: passages order, training and sampling.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    passage_len: int = Field(default=128, ge=16)
    n_members: int = Field(default=300, ge=10)
    n_nonmembers: int = Field(default=300, ge=10)
    n_human: int = Field(default=300, ge=10)
    n_reference: int = Field(default=1000, ge=10)
    prompt_len: int = Field(default=16, ge=1)
    temperature: float = Field(default=1.0, gt=0.0)
    target_lm: CharLMSpec = CharLMSpec(hidden=256)
    other_lm: CharLMSpec = CharLMSpec(hidden=96)
    steps: int = Field(default=1500, ge=1)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=3e-3, gt=0.0)
    k: float = Field(default=0.2, gt=0.0, le=1.0)
    n_boot: Annotated[int, Field(ge=10), Limit("bootstrap")] = 300
    seed: Seed = 0


def transfer_table(
    stats_mia: dict[str, np.ndarray], is_member: np.ndarray,
    stats_det: dict[str, np.ndarray], is_machine: np.ndarray, n_boot: int, seed: int,
) -> tuple[pa.Table, dict]:
    """AUC (+CI) of each statistic on both tasks, and Spearman rho of the two AUC columns.

    rho's CI resamples texts within each of the four groups and recomputes every AUC.
    """
    names = list(stats_mia)
    rows = []
    for i, name in enumerate(names):
        a_m, lo_m, hi_m = mia.auc_ci(stats_mia[name], is_member, n_boot=n_boot, seed=seed + i)
        a_d, lo_d, hi_d = mia.auc_ci(stats_det[name], is_machine, n_boot=n_boot, seed=seed + i)
        rows.append({
            "statistic": name, "origin": ORIGIN[name],
            "mia_auc": a_m, "mia_auc_lo": lo_m, "mia_auc_hi": hi_m,
            "det_auc": a_d, "det_auc_lo": lo_d, "det_auc_hi": hi_d,
            "mia_tpr_at_0.01_fpr": mia.tpr_at_fpr(stats_mia[name], is_member, 0.01),
            "det_tpr_at_0.01_fpr": mia.tpr_at_fpr(stats_det[name], is_machine, 0.01),
        })
    table = pa.Table.from_pylist(rows)
    rho = float(stats.spearmanr(table.column("mia_auc"), table.column("det_auc")).statistic)
    rng = np.random.default_rng(seed)
    groups = [
        (stats_mia, np.flatnonzero(is_member)), (stats_mia, np.flatnonzero(~is_member)),
        (stats_det, np.flatnonzero(is_machine)), (stats_det, np.flatnonzero(~is_machine)),
    ]
    reps = []
    for _ in range(n_boot):
        idx = [rng.choice(g, g.size) for _, g in groups]
        am = [mia.fast_auc(stats_mia[n][idx[0]], stats_mia[n][idx[1]]) for n in names]
        ad = [mia.fast_auc(stats_det[n][idx[2]], stats_det[n][idx[3]]) for n in names]
        reps.append(stats.spearmanr(am, ad).statistic)
    lo, hi = np.nanquantile(reps, [0.025, 0.975])
    return table, {"spearman_rho": rho, "spearman_rho_lo": float(lo), "spearman_rho_hi": float(hi)}


def text_detection_audit(params: TextDetectParams, *, corpus: list[str] | None = None) -> dict[str, object]:
    """Train two LMs, sample machine text, score everything, build the transfer table.

    Args:
        params: the audit's params.
        corpus: passages to use (default: :func:`passages` of :func:`corpus_text`).

    Returns:
        ``transfer`` (pa.Table), ``summary`` (dict: rho + CI, LM losses, wall times),
        ``samples`` (str: a few machine texts next to human ones).
    """
    p = params
    if corpus is None:
        corpus = passages(corpus_text(), p.passage_len, p.seed)
    need = p.n_members + p.n_nonmembers + 2 * p.n_human + p.n_reference
    if len(corpus) < need:
        raise ValueError(f"corpus has {len(corpus)} passages; the params need {need}")
    if p.prompt_len >= p.passage_len:
        raise ValueError(f"prompt_len {p.prompt_len} must be < passage_len {p.passage_len}")
    cuts = np.cumsum([p.n_members, p.n_nonmembers, p.n_human, p.n_human, p.n_reference])
    members, nonmembers, human, prompts_src, reference = np.split(np.array(corpus, dtype=object), cuts)[:5]

    timing = {}
    with torch_threads(1):
        t0 = time.perf_counter()
        target, curve_t = train_lm(p.target_lm, list(members), p.steps, p.batch_size, p.lr, p.seed)
        timing["train_target_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        other, curve_o = train_lm(p.other_lm, list(reference), p.steps, p.batch_size, p.lr, p.seed + 1)
        timing["train_other_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prompts = [s[: p.prompt_len] for s in prompts_src]
    machine = sample_texts(target, prompts, p.passage_len - p.prompt_len, p.temperature, p.seed)
    timing["sample_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    mia_texts = list(members) + list(nonmembers)
    is_member = np.r_[np.ones(len(members), bool), np.zeros(len(nonmembers), bool)]
    det_texts = machine + list(human)
    is_machine = np.r_[np.ones(len(machine), bool), np.zeros(len(human), bool)]
    s_mia = text_statistics(mia_texts, target, other, p.k)
    s_det = text_statistics(det_texts, target, other, p.k)
    timing["score_s"] = time.perf_counter() - t0
    table, rho = transfer_table(s_mia, is_member, s_det, is_machine, p.n_boot, p.seed)
    summary = {
        **rho, **timing,
        "target_final_loss": curve_t[-1], "other_final_loss": curve_o[-1],
        "n_members": len(members), "n_nonmembers": len(nonmembers),
        "n_human": len(human), "n_machine": len(machine),
    }
    shown = "\n\n".join(f"--- machine ---\n{m}\n--- human ---\n{h}" for m, h in zip(machine[:3], human[:3]))
    return {"transfer": table, "summary": summary, "samples": shown}
