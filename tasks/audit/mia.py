"""Membership inference attacks (MIAs) as scorers with one interface, and their metrics.

Every attack maps an :class:`AttackInputs` to one score per candidate, **higher = more
likely a member**, and is registered by name (:func:`register_attack`, :data:`ATTACKS`).

Attacks (paper, formula):

* ``loss`` - Yeom et al. 2018, "Privacy Risk in Machine Learning": s(x) = -CE(f(x), y).
* ``entropy`` - Salem et al. 2019, "ML-Leaks": s(x) = -H(p), p = softmax(f(x)).
* ``modified_entropy`` - Song & Mittal 2021, "Systematic Evaluation of Privacy Risks of
  ML Models", Eq. (7): Mentr(p, y) = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i);
  s = -Mentr.
* ``reference_loss`` - Watson et al. 2022, "On the Importance of Difficulty Calibration in
  MIAs" (also Sablayrolles et al. 2019): s(x) = -(l_target(x) - mean_{ref OUT} l_ref(x)).
* ``lira_online`` / ``lira_offline`` - Carlini et al. 2022, "Membership Inference Attacks
  From First Principles" (arXiv 2112.03570), Alg. 1: per-example Gaussian fits of the
  logit-scaled confidence phi = log p_y - log(1 - p_y) over shadow models.
* ``rmia`` - Zarifzadeh, Liu, Shokri 2024, "Low-Cost High-Power Membership Inference
  Attacks" (arXiv 2312.03262), Eq. (3)-(4): pairwise likelihood ratios against population z.
* ``grad_norm`` - white-box, Wang et al. 2024 "Pandora's White-Box" (arXiv 2402.17012):
  s(x) = -||grad_theta l(x)||_2 (members have small gradients).
* ``min_k`` - Shi et al. 2024, "Detecting Pretraining Data from LLMs": mean of the lowest
  k% token log-probabilities.
* ``zlib`` - Carlini et al. 2021, "Extracting Training Data from LLMs": s = -NLL / zlib
  entropy (bits of the zlib-compressed text), NLL = summed token negative log-likelihood.

Metrics (conventions fixed here and tested, see ``docs/auditing.md``): ROC AUC by the
trapezoid rule on the empirical ROC (= Mann-Whitney AUC, ties count 1/2; **not** the convex
hull), TPR at FPR x as ``tpr[last index with fpr <= x]`` (Privacy Meter's convention), best
balanced accuracy ``max_t 1 - (fpr + 1 - tpr) / 2`` (LiRA's ``do_plot``), stratified
bootstrap percentile CIs for the AUC.

Assumption: the statistics helpers (bootstrap CIs) live here until the evaluation stage
(issue #4, ``tasks/evaluation/rliable.py``) lands on main; then they should move there.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import stats
from scipy.special import log_softmax, logsumexp

from tasks.platform.registry import Registry

# ---------------------------------------------------------------------------------------
# PLATFORM: inputs, validation, registry
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttackInputs:
    """Everything an attack may look at; each attack declares the fields it needs.

    Attributes:
        logits: target model's logits on the candidates, float (n, C).
        labels: true labels of the candidates, int (n,).
        ref_logits: reference/shadow models' logits on the candidates, float (R, n, C).
        ref_in: whether candidate j was in reference model r's training set, bool (R, n).
        pop_logits: target model's logits on population points z (non-members), (m, C).
        pop_labels: labels of the population points, int (m,).
        ref_pop_logits: reference models' logits on the population points, (R, m, C).
        grad_norms: per-candidate L2 norm of the loss gradient w.r.t. all target
            parameters, float (n,) (see :func:`gradient_norms`).
        token_logprobs: per text, log p(x_t | x_<t) of each observed token, list of (T_i,).
        texts: the candidate texts (for ``zlib``), list of str.
    """

    logits: np.ndarray | None = None
    labels: np.ndarray | None = None
    ref_logits: np.ndarray | None = None
    ref_in: np.ndarray | None = None
    pop_logits: np.ndarray | None = None
    pop_labels: np.ndarray | None = None
    ref_pop_logits: np.ndarray | None = None
    grad_norms: np.ndarray | None = None
    token_logprobs: list[np.ndarray] | None = None
    texts: list[str] | None = None


@dataclass(frozen=True)
class Attack:
    """A registered attack: ``fn(inputs, **options) -> scores (n,)``, higher = member."""

    name: str
    fn: Callable[..., np.ndarray]
    needs: tuple[str, ...]
    cite: str
    options: dict = field(default_factory=dict)


ATTACKS: Registry[Attack] = Registry("attack")


def register_attack(name: str, needs: tuple[str, ...], cite: str, **options):
    """Register ``fn(inputs, **options)`` under ``name``; duplicate names raise."""

    def deco(fn):
        ATTACKS.add(name, Attack(name, fn, needs, cite, dict(options)))
        return fn

    return deco


def get_attack(name: str) -> Attack:
    return ATTACKS.lookup(name)


def run_attack(name: str, inputs: AttackInputs, **options) -> np.ndarray:
    """Score the candidates with attack ``name``; checks inputs and the finite result.

    Returns:
        scores, float64 (n,), higher = more likely a member.
    """
    attack = get_attack(name)
    missing = [f for f in attack.needs if getattr(inputs, f) is None]
    if missing:
        raise ValueError(f"attack {name!r} needs input(s) {missing}, which were not given")
    _check_inputs(inputs)
    scores = np.asarray(attack.fn(inputs, **{**attack.options, **options}), dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"attack {name!r} produced non-finite scores")
    return scores


def _check_inputs(inp: AttackInputs) -> None:
    """Shapes agree and values are finite; errors name the offending field."""
    for name in ("logits", "ref_logits", "pop_logits", "ref_pop_logits", "grad_norms"):
        arr = getattr(inp, name)
        if arr is not None and not np.all(np.isfinite(arr)):
            raise ValueError(f"AttackInputs.{name} contains NaN or inf")
    if inp.logits is not None:
        if inp.logits.ndim != 2:
            raise ValueError(f"AttackInputs.logits must be (n, C), got shape {inp.logits.shape}")
        n = inp.logits.shape[0]
        if inp.labels is None or inp.labels.shape != (n,):
            raise ValueError(f"AttackInputs.labels must have shape ({n},) to match logits")
        if inp.ref_logits is not None and inp.ref_logits.shape[1:] != inp.logits.shape:
            raise ValueError(
                f"AttackInputs.ref_logits shape {inp.ref_logits.shape} does not match "
                f"(R, *{inp.logits.shape})"
            )
        if inp.ref_in is not None and (
            inp.ref_logits is None or inp.ref_in.shape != inp.ref_logits.shape[:2]
        ):
            raise ValueError("AttackInputs.ref_in must be bool (R, n) matching ref_logits")
        if inp.grad_norms is not None and inp.grad_norms.shape != (n,):
            raise ValueError(f"AttackInputs.grad_norms must have shape ({n},)")
    if inp.pop_logits is not None:
        m = inp.pop_logits.shape[0]
        if inp.pop_labels is None or inp.pop_labels.shape != (m,):
            raise ValueError(f"AttackInputs.pop_labels must have shape ({m},)")
        if inp.ref_pop_logits is not None and inp.ref_pop_logits.shape[1:] != inp.pop_logits.shape:
            raise ValueError("AttackInputs.ref_pop_logits does not match (R, *pop_logits.shape)")
    if inp.texts is not None and inp.token_logprobs is not None:
        if len(inp.texts) != len(inp.token_logprobs):
            raise ValueError(
                f"{len(inp.texts)} texts but {len(inp.token_logprobs)} token_logprobs rows"
            )


# ---------------------------------------------------------------------------------------
# PAPER: per-example signals
# ---------------------------------------------------------------------------------------


def true_label_logprob(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log p_y from logits (..., n, C) and labels (n,) -> (..., n), computed stably."""
    logp = log_softmax(np.asarray(logits, dtype=np.float64), axis=-1)
    return np.take_along_axis(logp, np.broadcast_to(labels[..., None], logp.shape[:-1] + (1,)), -1)[..., 0]


def logit_scaled_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LiRA's signal phi = log p_y - log(sum_{y' != y} p_y') (Carlini et al. 2022, Sec. 4.3).

    Computed from logits as z_y - logsumexp_{y' != y} z_y', which is exact and needs no
    1e-45 guard. Shapes: logits (..., n, C), labels (n,) -> (..., n).
    """
    z = np.asarray(logits, dtype=np.float64)
    idx = np.broadcast_to(labels[..., None], z.shape[:-1] + (1,))
    z_y = np.take_along_axis(z, idx, -1)[..., 0]
    others = z.copy()
    np.put_along_axis(others, idx, -np.inf, -1)
    return z_y - logsumexp(others, axis=-1)


# ---------------------------------------------------------------------------------------
# PAPER: attacks
# ---------------------------------------------------------------------------------------


@register_attack("loss", needs=("logits", "labels"), cite="Yeom et al. 2018")
def _loss(inp: AttackInputs) -> np.ndarray:
    return true_label_logprob(inp.logits, inp.labels)  # = -cross-entropy


@register_attack("entropy", needs=("logits",), cite="Salem et al. 2019")
def _entropy(inp: AttackInputs) -> np.ndarray:
    logp = log_softmax(np.asarray(inp.logits, dtype=np.float64), axis=-1)
    return (np.exp(logp) * logp).sum(-1)  # = -H(p)


@register_attack("modified_entropy", needs=("logits", "labels"), cite="Song & Mittal 2021 Eq. 7")
def _modified_entropy(inp: AttackInputs) -> np.ndarray:
    logp = log_softmax(np.asarray(inp.logits, dtype=np.float64), axis=-1)  # (n, C)
    p = np.exp(logp)
    # log(1 - p_i) stably from log p_i.
    log1m = np.log(-np.expm1(np.minimum(logp, -1e-300)))
    onehot = np.eye(p.shape[1], dtype=bool)[inp.labels]
    term_y = -(1.0 - p[onehot]) * logp[onehot]
    term_other = -np.where(onehot, 0.0, p * log1m).sum(-1)
    return -(term_y + term_other)


@register_attack(
    "reference_loss", needs=("logits", "labels", "ref_logits"), cite="Watson et al. 2022"
)
def _reference_loss(inp: AttackInputs) -> np.ndarray:
    target = true_label_logprob(inp.logits, inp.labels)  # (n,)
    ref = true_label_logprob(inp.ref_logits, inp.labels)  # (R, n)
    if inp.ref_in is None:
        return target - ref.mean(0)
    out = ~inp.ref_in
    _need_per_example(out, "OUT", "reference_loss")
    return target - (ref * out).sum(0) / out.sum(0)


def _need_per_example(mask: np.ndarray, what: str, attack: str) -> None:
    bad = np.flatnonzero(mask.sum(0) == 0)
    if bad.size:
        raise ValueError(
            f"attack {attack!r}: candidates {bad[:5].tolist()} have no {what} reference model"
        )


def _masked_median_std(x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column median, std and count of x (R, n) over rows where mask (R, n) is set."""
    xm = np.where(mask, x, np.nan)
    count = mask.sum(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are handled below
        med = np.nanmedian(xm, axis=0)
        sd = np.nanstd(xm, axis=0)
    return med, sd, count


def _lira_stats(phi: np.ndarray, mask: np.ndarray, fix_variance: bool) -> tuple[np.ndarray, np.ndarray]:
    """Location (median) and scale (std) per example; global std when fixed or too few."""
    mu, sd, count = _masked_median_std(phi, mask)
    global_sd = float(np.std(phi[mask])) if mask.any() else 1.0
    # Assumption: with fewer than 2 models a per-example std is undefined; fall back to
    # the global std (what fix_variance uses everywhere), as LiRA's code does with few models.
    sd = np.where(fix_variance | (count < 2), global_sd, sd)
    return mu, np.maximum(sd, 1e-6)


@register_attack(
    "lira_online",
    needs=("logits", "labels", "ref_logits", "ref_in"),
    cite="Carlini et al. 2022 Alg. 1",
    fix_variance=False,
)
def _lira_online(inp: AttackInputs, fix_variance: bool) -> np.ndarray:
    """Lambda = log N(phi; mu_in, s_in^2) - log N(phi; mu_out, s_out^2) (Alg. 1, line 15).

    mu = median over shadow models (as in the released code), s = std.
    Assumption: a candidate that is IN (or OUT) for no shadow model gets mu_in = mu_out + d
    (resp. mu_out = mu_in - d), d the mean IN-OUT gap over the candidates that have both.
    Shadow splits from :func:`balanced_membership` never need this.
    """
    phi_t = logit_scaled_confidence(inp.logits, inp.labels)  # (n,)
    phi_r = logit_scaled_confidence(inp.ref_logits, inp.labels)  # (R, n)
    m_in, m_out = inp.ref_in, ~inp.ref_in
    mu_in, sd_in = _lira_stats(phi_r, m_in, fix_variance)
    mu_out, sd_out = _lira_stats(phi_r, m_out, fix_variance)
    both = (m_in.sum(0) > 0) & (m_out.sum(0) > 0)
    if not both.any():
        raise ValueError("attack 'lira_online': no candidate is both IN and OUT of some shadow model")
    gap = float(np.mean(mu_in[both] - mu_out[both]))
    mu_in = np.where(m_in.sum(0) > 0, mu_in, mu_out + gap)
    mu_out = np.where(m_out.sum(0) > 0, mu_out, mu_in - gap)
    return stats.norm.logpdf(phi_t, mu_in, sd_in) - stats.norm.logpdf(phi_t, mu_out, sd_out)


@register_attack(
    "lira_offline",
    needs=("logits", "labels", "ref_logits"),
    cite="Carlini et al. 2022 Sec. 4.3 (offline)",
    fix_variance=False,
)
def _lira_offline(inp: AttackInputs, fix_variance: bool) -> np.ndarray:
    """One-sided test: Lambda = Pr[Z < phi], Z ~ N(mu_out, s_out^2) (member if phi is high).

    Returned as log Phi((phi - mu_out) / s_out) for resolution in the tail.
    Assumption: the paper's one-sided test, not the released code's two-sided density.
    Without ``ref_in`` every reference model is taken as OUT.
    """
    phi_t = logit_scaled_confidence(inp.logits, inp.labels)
    phi_r = logit_scaled_confidence(inp.ref_logits, inp.labels)
    m_out = np.ones_like(phi_r, dtype=bool) if inp.ref_in is None else ~inp.ref_in
    _need_per_example(m_out, "OUT", "lira_offline")
    mu_out, sd_out = _lira_stats(phi_r, m_out, fix_variance)
    return stats.norm.logcdf((phi_t - mu_out) / sd_out)


@register_attack(
    "rmia",
    needs=("logits", "labels", "ref_logits", "pop_logits", "pop_labels", "ref_pop_logits"),
    cite="Zarifzadeh et al. 2024 Eq. 3-4",
    gamma=1.0,
    offline_a=None,
)
def _rmia(inp: AttackInputs, gamma: float, offline_a: float | None) -> np.ndarray:
    """Score(x) = Pr_z[ LR(x, z) > gamma ], LR = (p(x|t)/Pr(x)) / (p(z|t)/Pr(z)).

    p(.|theta) is the probability of the true label. Pr(x) averages p(x|theta') over the
    reference models (online: half IN, half OUT). Offline (``offline_a`` = a in [0, 1]),
    Pr(x) = ((1 + a)/2) P_OUT(x) + (1 - a)/2 with P_OUT the mean over OUT references
    (all references when ``ref_in`` is absent). Pr(z) is the plain mean over references.
    """
    p_x = np.exp(true_label_logprob(inp.logits, inp.labels))  # (n,)
    p_z = np.exp(true_label_logprob(inp.pop_logits, inp.pop_labels))  # (m,)
    ref_x = np.exp(true_label_logprob(inp.ref_logits, inp.labels))  # (R, n)
    ref_z = np.exp(true_label_logprob(inp.ref_pop_logits, inp.pop_labels))  # (R, m)
    if offline_a is None:
        pr_x = ref_x.mean(0)
        pr_z = ref_z.mean(0)
    else:
        if not 0.0 <= offline_a <= 1.0:
            raise ValueError(f"rmia offline_a must be in [0, 1], got {offline_a}")
        out = np.ones_like(ref_x, dtype=bool) if inp.ref_in is None else ~inp.ref_in
        _need_per_example(out, "OUT", "rmia")
        p_out = (ref_x * out).sum(0) / out.sum(0)
        pr_x = (1 + offline_a) / 2 * p_out + (1 - offline_a) / 2
        pr_z = (1 + offline_a) / 2 * ref_z.mean(0) + (1 - offline_a) / 2
    tiny = 1e-300
    ratio_x = p_x / np.maximum(pr_x, tiny)  # (n,)
    ratio_z = np.sort(p_z / np.maximum(pr_z, tiny))  # (m,)
    # LR(x, z) > gamma  <=>  ratio_z < ratio_x / gamma; count with one sorted search.
    return np.searchsorted(ratio_z, ratio_x / gamma, side="left") / ratio_z.size


@register_attack("grad_norm", needs=("grad_norms",), cite="Wang et al. 2024 (Pandora's White-Box)")
def _grad_norm(inp: AttackInputs) -> np.ndarray:
    return -np.asarray(inp.grad_norms, dtype=np.float64)


@register_attack("min_k", needs=("token_logprobs",), cite="Shi et al. 2024 (Min-K% Prob)", k=0.2)
def _min_k(inp: AttackInputs, k: float) -> np.ndarray:
    return np.array([min_k_mean(lp, k) for lp in inp.token_logprobs])


@register_attack("zlib", needs=("token_logprobs", "texts"), cite="Carlini et al. 2021 Sec. 5.1")
def _zlib(inp: AttackInputs) -> np.ndarray:
    return np.array(
        [-(-np.sum(lp)) / zlib_entropy(t) for lp, t in zip(inp.token_logprobs, inp.texts)]
    )


def min_k_mean(values: np.ndarray, k: float) -> float:
    """Mean of the lowest ceil(k * T) entries of a (T,) array (Min-K%, Shi et al. 2024)."""
    if not 0.0 < k <= 1.0:
        raise ValueError(f"min_k fraction k must be in (0, 1], got {k}")
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("min_k: empty token sequence")
    n = max(1, int(np.ceil(k * v.size)))
    return float(np.sort(v)[:n].mean())


def zlib_entropy(text: str) -> float:
    """Bits of the zlib-compressed UTF-8 text (Carlini et al. 2021's zlib entropy)."""
    if not text:
        raise ValueError("zlib: empty text")
    return 8.0 * len(zlib.compress(text.encode("utf-8")))


# ---------------------------------------------------------------------------------------
# PLATFORM: helpers to produce inputs
# ---------------------------------------------------------------------------------------


def balanced_membership(n_models: int, n_examples: int, seed: int) -> np.ndarray:
    """bool (n_models, n_examples): each example IN for exactly half the models.

    As LiRA's ``train.py`` (keep = argsort of uniforms < pkeep * N), so every example has
    both IN and OUT shadow models when ``n_models >= 2``. With one model, a random half.
    """
    if n_models < 1:
        raise ValueError(f"n_models must be >= 1, got {n_models}")
    rng = np.random.default_rng(seed)
    if n_models == 1:  # a lone target: a random half of the examples are its members
        return (rng.permutation(n_examples) < n_examples // 2)[None, :]
    order = rng.uniform(size=(n_models, n_examples)).argsort(0)
    return order < n_models // 2


def gradient_norms(model, x, y) -> np.ndarray:
    """Per-example L2 norm of d CE(model(x_i), y_i) / d theta over all parameters, (n,).

    Uses ``torch.func`` (vmap over per-example grads); white-box signal of Pandora's
    White-Box (``theta_grad``, p = 2).
    """
    import torch
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_one(p, xi, yi):
        out = functional_call(model, p, (xi[None],))
        return torch.nn.functional.cross_entropy(out, yi[None])

    model.eval()
    g = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, x, y)
    sq = sum(v.reshape(v.shape[0], -1).pow(2).sum(1) for v in g.values())
    return sq.sqrt().numpy().astype(np.float64)


# ---------------------------------------------------------------------------------------
# PLATFORM: metrics (fixed conventions)
# ---------------------------------------------------------------------------------------


def check_scores(scores, is_member) -> tuple[np.ndarray, np.ndarray]:
    """Validate (scores (n,), member labels (n,)); return float64 scores and bool labels."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_member)
    if s.ndim != 1 or y.ndim != 1:
        raise ValueError(f"scores and member labels must be 1-D, got {s.shape} and {y.shape}")
    if s.shape != y.shape:
        raise ValueError(f"mismatched lengths: {s.size} scores vs {y.size} member labels")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"scores contain {int(np.sum(~np.isfinite(s)))} NaN/inf value(s)")
    if y.dtype != bool:
        if not np.all(np.isin(y, (0, 1))):
            raise ValueError("member labels must be bool or 0/1")
        y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError(
            f"member labels are all one class ({int(y.sum())} members of {y.size}); "
            "need both members and non-members"
        )
    return s, y


def roc(scores, is_member) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empirical ROC (fpr, tpr, thresholds), every distinct threshold kept, fpr ascending."""
    from sklearn.metrics import roc_curve

    s, y = check_scores(scores, is_member)
    return roc_curve(y, s, drop_intermediate=False)


def auc(scores, is_member) -> float:
    """Area under the empirical ROC by the trapezoid rule (not the convex hull)."""
    fpr, tpr, _ = roc(scores, is_member)
    return float(np.trapezoid(tpr, fpr))


def tpr_at_fpr(scores, is_member, max_fpr: float) -> float:
    """TPR at the last ROC point with ``fpr <= max_fpr`` (Privacy Meter's convention)."""
    if not 0.0 <= max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in [0, 1], got {max_fpr}")
    fpr, tpr, _ = roc(scores, is_member)
    return float(tpr[np.flatnonzero(fpr <= max_fpr)[-1]])


def balanced_accuracy(scores, is_member) -> float:
    """Best balanced accuracy over thresholds, max_t 1 - (fpr + (1 - tpr)) / 2."""
    fpr, tpr, _ = roc(scores, is_member)
    return float(np.max(1.0 - (fpr + (1.0 - tpr)) / 2.0))


def fast_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUC of member scores ``pos`` vs non-member scores ``neg`` (ties 1/2).

    Equal to :func:`auc` (the trapezoid rule on the empirical ROC); used inside bootstraps.
    """
    ranks = stats.rankdata(np.r_[pos, neg])
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def member_bootstrap_ci(
    scores, is_member, stat: Callable = fast_auc, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile CI of ``stat(pos, neg)``, resampling members and non-members separately.

    Stratified so every resample keeps both classes at their observed sizes.
    """
    s, y = check_scores(scores, is_member)
    rng = np.random.default_rng(seed)
    pos, neg = s[y], s[~y]
    vals = np.array(
        [stat(rng.choice(pos, pos.size), rng.choice(neg, neg.size)) for _ in range(n_boot)]
    )
    lo, hi = np.quantile(vals, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def auc_ci(scores, is_member, n_boot: int = 1000, level: float = 0.95, seed: int = 0):
    """(AUC, lo, hi): trapezoid AUC with a stratified bootstrap percentile CI."""
    lo, hi = member_bootstrap_ci(scores, is_member, fast_auc, n_boot, level, seed)
    return auc(scores, is_member), lo, hi


def attack_metrics(scores, is_member, fprs=(0.001, 0.01), n_boot: int = 1000, seed: int = 0) -> dict:
    """AUC with CI, TPR at each FPR in ``fprs``, balanced accuracy, counts."""
    s, y = check_scores(scores, is_member)
    a, lo, hi = auc_ci(s, y, n_boot=n_boot, seed=seed)
    out = {"auc": a, "auc_lo": lo, "auc_hi": hi, "bal_acc": balanced_accuracy(s, y)}
    for x in fprs:
        out[f"tpr_at_{x:g}_fpr"] = tpr_at_fpr(s, y, x)
    out["n_members"], out["n_nonmembers"] = int(y.sum()), int((~y).sum())
    return out


def roc_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "ROC"):
    """Log-log ROC plot of ``{name: (scores, is_member)}``; returns a matplotlib Figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 4.5))  # no pyplot: no global figure state
    ax = fig.add_subplot(1, 1, 1)
    floor = 1e-4
    for name, (s, y) in curves.items():
        fpr, tpr, _ = roc(s, y)
        ax.plot(np.maximum(fpr, floor), np.maximum(tpr, floor), label=f"{name} (AUC {auc(s, y):.3f})")
    ax.plot([floor, 1], [floor, 1], "k:", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="FPR", ylabel="TPR", title=title, xlim=(floor, 1), ylim=(floor, 1))
    ax.legend(fontsize=7, loc="lower right")
    return fig
