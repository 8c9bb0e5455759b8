"""Differential-privacy auditing: empirical epsilon lower bounds and the conformal f-DP test.

Notation: "in" scores come from runs/canaries that included the audited record, "out"
scores from runs that did not; higher score = "in". A threshold test at t has
FPR = P(score >= t | out), TPR = P(score >= t | in).

Routes to a lower bound on epsilon at a given delta:

* :func:`eps_clopper_pearson` - many-run audit (Jagielski, Ullman, Oprea 2020, "How
  Private is Private SGD?"; Nasr et al. 2021): for (eps, delta)-DP every test obeys
  TPR <= e^eps FPR + delta and TNR <= e^eps FNR + delta, so
  eps >= max_t max( ln((TPR_lb - delta)/FPR_ub), ln((TNR_lb - delta)/FNR_ub) ),
  with one-sided Clopper-Pearson bounds, Bonferroni-corrected over thresholds.
* :func:`eps_gdp` - Nasr et al. 2023, "Tight Auditing of DP-SGD" (arXiv 2302.07956):
  mu_t = Phi^-1(1 - FPR_ub) - Phi^-1(FNR_ub) bounds the GDP parameter; mu_LB = max_t mu_t
  is converted to epsilon at delta with Dong, Roth, Su 2022, Cor. 2.13:
  delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2).
* :func:`eps_many_run` - both routes above on one canary's IN/OUT scores from 2R
  independent training runs, with the threshold strategies that keep the bound valid.
* :func:`eps_one_run` - Steinke, Nasr, Jagielski 2023, "Privacy Auditing with One (1)
  Training Run", Thm. 5.2 / Alg. 1: m canaries each included w.p. 1/2; r guesses, v right;
  p(eps, delta) = P[Bin(r, q) >= v] + 2 m delta max_{i=1..v} P[v > Bin(r, q) >= v - i] / i,
  q = e^eps / (1 + e^eps); eps_LB = sup{eps : p(eps, delta) < beta}.
* :func:`conformal_fdp_audit` / :func:`tradeoff_band` - the black-box f-DP audit of Shi &
  Ma 2025, "Auditing Differential Privacy in the Black-Box Setting" (arXiv 2503.12045).

Accounting (Opacus): :func:`accountant_epsilon`, :func:`noise_multiplier_for`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

# ---------------------------------------------------------------------------------------
# PAPER: Clopper-Pearson and the GDP route
# ---------------------------------------------------------------------------------------


def cp_upper(k, n, alpha: float):
    """One-sided (1 - alpha) Clopper-Pearson upper bound on a binomial rate; k, n arrays."""
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ub = stats.beta.ppf(1.0 - alpha, k + 1, n - k)
    return np.where(k >= n, 1.0, ub)


def cp_lower(k, n, alpha: float):
    """One-sided (1 - alpha) Clopper-Pearson lower bound on a binomial rate."""
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        lb = stats.beta.ppf(alpha, k, n - k + 1)
    return np.where(k <= 0, 0.0, lb)


def _check_in_out(in_scores, out_scores) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(in_scores, dtype=np.float64), np.asarray(out_scores, dtype=np.float64)
    for name, v in (("in_scores", a), ("out_scores", b)):
        if v.ndim != 1 or v.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-D array, got shape {v.shape}")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{name} contains NaN or inf")
    return a, b


def threshold_counts(in_scores, out_scores):
    """For every distinct threshold t (score >= t means "in"): (tp, fp, n_in, n_out)."""
    a, b = _check_in_out(in_scores, out_scores)
    thr = np.unique(np.r_[a, b])  # ascending
    a_s, b_s = np.sort(a), np.sort(b)
    tp = a.size - np.searchsorted(a_s, thr, side="left")
    fp = b.size - np.searchsorted(b_s, thr, side="left")
    return tp, fp, a.size, b.size


THRESHOLD_STRATEGIES = ("bonferroni", "split", "none")


def _threshold_bounds(in_scores, out_scores, alpha: float, strategy: str, seed: int):
    """Per-threshold one-sided CP bounds (tpr_lb, fpr_ub, tnr_lb, fnr_ub), each at level alpha_k.

    ``strategy`` makes the max over thresholds valid:

    * ``bonferroni``: all 2T intervals of the T thresholds share alpha (alpha / 2T each);
    * ``split``: the threshold with the best (uncorrected) bound on a random half of each
      score set is certified on the other half (alpha / 2 per bound); the callers
      handle it through :func:`_split`;
    * ``none``: alpha / 2 per bound with no correction for choosing the threshold
      (optimistic: the max over thresholds is not corrected, so the bound can exceed
      the true epsilon; kept only to compare with uncorrected published numbers).
    """
    if strategy not in THRESHOLD_STRATEGIES:
        raise ValueError(f"unknown threshold strategy {strategy!r}; expected {THRESHOLD_STRATEGIES}")
    tp, fp, n_in, n_out = threshold_counts(in_scores, out_scores)
    a = alpha / (2 * tp.size) if strategy == "bonferroni" else alpha / 2
    return (
        cp_lower(tp, n_in, a),
        cp_upper(fp, n_out, a),
        cp_lower(n_out - fp, n_out, a),
        cp_upper(n_in - tp, n_in, a),
    )


def _split(in_scores, out_scores, seed: int):
    """Random halves ((in_a, out_a), (in_b, out_b)) of the two score sets."""
    a, b = _check_in_out(in_scores, out_scores)
    if a.size < 2 or b.size < 2:
        raise ValueError("the split strategy needs at least 2 in and 2 out scores")
    rng = np.random.default_rng(seed)
    pa_, pb_ = rng.permutation(a.size), rng.permutation(b.size)
    ha, hb = a.size // 2, b.size // 2
    return (a[pa_[:ha]], b[pb_[:hb]]), (a[pa_[ha:]], b[pb_[hb:]])


def _eps_from_bounds(tpr_lb, fpr_ub, tnr_lb, fnr_ub, delta: float) -> np.ndarray:
    """eps_t = max(ln((TPR_lb - delta)/FPR_ub), ln((TNR_lb - delta)/FNR_ub)) per threshold."""
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = np.log(np.maximum(tpr_lb - delta, 0.0) / fpr_ub)
        e2 = np.log(np.maximum(tnr_lb - delta, 0.0) / fnr_ub)
    return np.nan_to_num(np.maximum(e1, e2), nan=-np.inf)


def eps_clopper_pearson(
    in_scores, out_scores, delta: float, alpha: float = 0.05, strategy: str = "bonferroni", seed: int = 0
) -> float:
    """Many-run epsilon lower bound with Clopper-Pearson intervals (see module docstring).

    Holds with probability >= 1 - alpha for ``bonferroni`` and ``split``
    (:func:`_threshold_bounds`). Returns 0.0 when no threshold certifies any leakage.
    """
    if strategy == "split":
        (ia, oa), (ib, ob) = _split(in_scores, out_scores, seed)
        tp, fp, n_in, n_out = threshold_counts(ia, oa)
        thr = np.unique(np.r_[ia, oa])
        a2 = alpha / 2  # choose t by the (uncorrected) lower bound on half A
        pt = _eps_from_bounds(
            cp_lower(tp, n_in, a2), cp_upper(fp, n_out, a2),
            cp_lower(n_out - fp, n_out, a2), cp_upper(n_in - tp, n_in, a2), delta,
        )
        t = thr[int(np.argmax(pt))]
        tp_b, fp_b = int(np.sum(ib >= t)), int(np.sum(ob >= t))
        b = _eps_from_bounds(
            cp_lower(tp_b, ib.size, alpha / 2), cp_upper(fp_b, ob.size, alpha / 2),
            cp_lower(ob.size - fp_b, ob.size, alpha / 2), cp_upper(ib.size - tp_b, ib.size, alpha / 2),
            delta,
        )
        return float(max(float(np.max(b)), 0.0))
    e = _eps_from_bounds(*_threshold_bounds(in_scores, out_scores, alpha, strategy, seed), delta)
    return float(max(float(np.max(e)), 0.0))


def gdp_delta(eps: float, mu: float) -> float:
    """delta(eps) of mu-GDP (Dong, Roth, Su 2022, Cor. 2.13)."""
    if mu <= 0:
        return 0.0
    return float(stats.norm.cdf(-eps / mu + mu / 2) - np.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2))


def gdp_to_eps(mu: float, delta: float) -> float:
    """Smallest eps >= 0 with delta(eps) <= delta for mu-GDP (root of Cor. 2.13)."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if mu <= 0 or gdp_delta(0.0, mu) <= delta:
        return 0.0
    hi = 1.0
    while gdp_delta(hi, mu) > delta:
        hi *= 2
    return float(optimize.brentq(lambda e: gdp_delta(e, mu) - delta, 0.0, hi, xtol=1e-10))


def _mu_from_bounds(fpr_ub, fnr_ub) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        mu = stats.norm.ppf(1 - np.asarray(fpr_ub)) - stats.norm.ppf(np.asarray(fnr_ub))
    return np.where(np.isfinite(mu), mu, -np.inf)


def mu_gdp_lower(
    in_scores, out_scores, alpha: float = 0.05, strategy: str = "bonferroni", seed: int = 0
) -> float:
    """mu_LB = max_t Phi^-1(1 - FPR_ub) - Phi^-1(FNR_ub) (Nasr et al. 2023), >= 0."""
    if strategy == "split":
        (ia, oa), (ib, ob) = _split(in_scores, out_scores, seed)
        tp, fp, n_in, n_out = threshold_counts(ia, oa)
        thr = np.unique(np.r_[ia, oa])
        a2 = alpha / 2  # choose t by the (uncorrected) lower bound on half A
        t = thr[int(np.argmax(_mu_from_bounds(cp_upper(fp, n_out, a2), cp_upper(n_in - tp, n_in, a2))))]
        fp_b, fn_b = int(np.sum(ob >= t)), int(np.sum(ib < t))
        mu = _mu_from_bounds(cp_upper(fp_b, ob.size, alpha / 2), cp_upper(fn_b, ib.size, alpha / 2))
    else:
        _, fpr_ub, _, fnr_ub = _threshold_bounds(in_scores, out_scores, alpha, strategy, seed)
        mu = _mu_from_bounds(fpr_ub, fnr_ub)
    return float(max(float(np.max(mu)), 0.0))


def eps_gdp(
    in_scores, out_scores, delta: float, alpha: float = 0.05, strategy: str = "bonferroni", seed: int = 0
) -> float:
    """Epsilon lower bound at ``delta`` through the GDP route (Nasr et al. 2023)."""
    return gdp_to_eps(mu_gdp_lower(in_scores, out_scores, alpha, strategy, seed), delta)


VALID_STRATEGIES = ("bonferroni", "split")  # the strategies whose bound holds w.p. >= 1 - alpha


def eps_many_run(
    in_scores, out_scores, delta: float, alpha: float = 0.05,
    strategies: tuple[str, ...] = VALID_STRATEGIES, seed: int = 0,
) -> dict[str, float]:
    """Many-run audit: epsilon lower bounds from one canary's scores in IN and OUT models.

    ``in_scores`` (R_in,) are the canary's scores in models trained with it, ``out_scores``
    (R_out,) in models trained without it (higher = "in"); each model is an independent run,
    so the counts above a threshold are binomial and Clopper-Pearson applies (Jagielski et
    al. 2020). For each strategy in ``strategies`` (``bonferroni``: every threshold, alpha
    shared over the 2T one-sided bounds; ``split``: threshold chosen on a random half of
    each arm, bound computed on the disjoint other half) this returns

    * ``eps_cp_<strategy>``: :func:`eps_clopper_pearson`, valid for any mechanism;
    * ``mu_gdp_<strategy>`` / ``eps_gdp_<strategy>``: the GDP route (:func:`eps_gdp`,
      Nasr et al. 2023). The mu bound is valid; converting it to epsilon assumes the
      mechanism's trade-off curve is Gaussian (true asymptotically for DP-SGD), so it is
      tighter but not distribution-free.

    plus ``n_in``, ``n_out`` and ``auc`` (trapezoid, ties 1/2). Bounds are >= 0.

    Raises:
        ValueError: empty, non-1-D or non-finite scores; delta or alpha outside (0, 1);
            a strategy other than ``bonferroni``/``split`` (``none`` is not a valid bound).
    """
    a, b = _check_in_out(in_scores, out_scores)
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    bad = [st for st in strategies if st not in VALID_STRATEGIES]
    if bad or not strategies:
        raise ValueError(f"strategies {tuple(strategies)!r}: each must be one of {VALID_STRATEGIES}")
    # AUC = P[in > out] + P[in = out] / 2 (Mann-Whitney), the same number as mia.auc
    gt = (a[:, None] > b[None, :]).mean()
    eq = (a[:, None] == b[None, :]).mean()
    out: dict[str, float] = {"n_in": int(a.size), "n_out": int(b.size), "auc": float(gt + eq / 2)}
    for st in strategies:
        out[f"eps_cp_{st}"] = eps_clopper_pearson(a, b, delta, alpha, st, seed)
        mu = mu_gdp_lower(a, b, alpha, st, seed)
        out[f"mu_gdp_{st}"] = mu
        out[f"eps_gdp_{st}"] = gdp_to_eps(mu, delta)
    return out


# ---------------------------------------------------------------------------------------
# PAPER: one-run audit (Steinke, Nasr, Jagielski 2023)
# ---------------------------------------------------------------------------------------


def one_run_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """p(eps, delta) of Steinke et al. 2023, Thm. 5.2 (m canaries, r guesses, v correct)."""
    if not (0 <= v <= r <= m):
        raise ValueError(f"need 0 <= v <= r <= m, got m={m}, r={r}, v={v}")
    q = 1.0 / (1.0 + np.exp(-eps))
    tail = stats.binom.sf(v - 1, r, q)  # P[Bin(r, q) >= v]
    if v == 0:
        return float(tail)
    i = np.arange(1, v + 1)
    # P[v > Bin >= v - i] = sum_{j=v-i}^{v-1} pmf(j) = cumulative sums of pmf(v-1), pmf(v-2), ...
    window = np.cumsum(stats.binom.pmf(v - i, r, q))
    return float(tail + 2 * m * delta * np.max(window / i))


def eps_one_run_counts(m: int, r: int, v: int, delta: float, beta: float = 0.05) -> float:
    """sup{eps : p(eps, delta) < beta}, by doubling then bisection (Steinke et al. Alg. 1)."""
    if one_run_p_value(m, r, v, 0.0, delta) >= beta:
        return 0.0
    lo, hi = 0.0, 1.0
    while one_run_p_value(m, r, v, hi, delta) < beta:
        lo, hi = hi, hi * 2
        if hi > 1e3:
            return float(lo)
    for _ in range(60):
        mid = (lo + hi) / 2
        if one_run_p_value(m, r, v, mid, delta) < beta:
            lo = mid
        else:
            hi = mid
    return float(lo)


def eps_one_run(scores, included, delta: float, beta: float = 0.05, k_grid: tuple[int, ...] | None = None) -> dict:
    """One-run audit from canary scores (higher = included) and inclusion bits.

    The auditor guesses "in" for the k_pos highest scores and "out" for the k_neg lowest,
    abstaining on the rest, and reports the best bound over ``k_grid`` for both.
    Assumption: like Privacy Meter's ``audit.py``, the best (k_pos, k_neg) is picked after
    seeing the scores, which is optimistic; pass a single-entry ``k_grid`` fixed in
    advance for a strictly valid bound.

    Returns:
        ``{"eps_lb", "k_pos", "k_neg", "r", "v", "m"}``.
    """
    s = np.asarray(scores, dtype=np.float64)
    inc = np.asarray(included, dtype=bool)
    if s.shape != inc.shape or s.ndim != 1:
        raise ValueError(f"scores {s.shape} and included {inc.shape} must be equal-length 1-D")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or inf")
    m = s.size
    order = np.argsort(-s, kind="stable")
    inc_sorted = inc[order]
    if k_grid is None:
        step = max(1, int(np.sqrt(m)))
        k_grid = tuple(range(step, m // 2 + 1, step)) or (max(1, m // 2),)
    cum_in = np.r_[0, np.cumsum(inc_sorted)]  # correct "in" guesses among the top k
    cum_out_rev = np.r_[0, np.cumsum(~inc_sorted[::-1])]  # correct "out" among the bottom k
    best = {"eps_lb": 0.0, "k_pos": 0, "k_neg": 0, "r": 0, "v": 0, "m": m}
    for kp in k_grid:
        for kn in k_grid:
            if kp + kn > m:
                continue
            v = int(cum_in[kp] + cum_out_rev[kn])
            e = eps_one_run_counts(m, kp + kn, v, delta, beta)
            if e > best["eps_lb"]:
                best = {"eps_lb": e, "k_pos": kp, "k_neg": kn, "r": kp + kn, "v": v, "m": m}
    return best


# ---------------------------------------------------------------------------------------
# PAPER: conformal black-box f-DP audit (Shi & Ma 2025, arXiv 2503.12045)
# ---------------------------------------------------------------------------------------


def gaussian_tradeoff(alpha, mu: float):
    """T(N(0,1), N(mu,1))(alpha) = Phi(Phi^-1(1 - alpha) - mu) (Dong, Roth, Su 2022, Eq. 6)."""
    a = np.clip(np.asarray(alpha, dtype=np.float64), 0.0, 1.0)
    return stats.norm.cdf(stats.norm.ppf(1 - a) - mu)


def _conformal_threshold(cal: np.ndarray, alpha: float, gamma: float) -> tuple[float, int]:
    """Threshold t from calibration scores of P so that P(score > t) <= alpha w.p. >= 1 - gamma.

    With k-th order statistic t = cal_(k), the mass of P above t is Beta(n + 1 - k, k)
    (conformal / order-statistic coverage), so pick the smallest k whose Beta upper
    (1 - gamma) quantile is <= alpha. Returns (t, k); t = +inf if no k qualifies.
    """
    n = cal.size
    srt = np.sort(cal)
    k = np.arange(1, n + 1)
    ok = stats.beta.ppf(1 - gamma, n + 1 - k, k) <= alpha
    if not ok.any():
        return float("inf"), n + 1
    kk = int(k[ok][0])
    return float(srt[kk - 1]), kk


@dataclass(frozen=True)
class FDPAuditResult:
    """Outcome of :func:`conformal_fdp_audit`.

    Attributes:
        reject: True when the claim "the mechanism is f-DP" is rejected (privacy violated).
        p_value: finite-sample p-value of the audit (valid for any score function).
        alpha: type-I level of the threshold test, as certified by the calibration step.
        threshold: conformal threshold on the score.
        type2_hat: observed type-II error of the threshold test on the Q test split.
        f_alpha: claimed f(alpha), the least type-II error an f-DP mechanism allows.
        gamma: probability budget for the calibration step failing.
    """

    reject: bool
    p_value: float
    alpha: float
    threshold: float
    type2_hat: float
    f_alpha: float
    gamma: float


def conformal_fdp_audit(
    p_samples,
    q_samples,
    f,
    alpha: float = 0.1,
    level: float = 0.05,
    gamma_share: float = 0.5,
) -> FDPAuditResult:
    """Audit the claim "T(P, Q) >= f" from black-box scores of M(D) ~ P and M(D') ~ Q.

    H0: the mechanism is f-DP, i.e. every test with type-I error a has type-II error
    >= f(a). Procedure (our reading of CIPA, Shi & Ma 2025, Sec. 3):

    1. Conformal step: from the P samples (higher score = "looks like Q") pick a threshold
       t such that the test "reject if score > t" has type-I error <= ``alpha`` with
       probability >= 1 - gamma, gamma = ``gamma_share * level`` (order-statistic
       coverage, :func:`_conformal_threshold`). This needs only exchangeability of the P
       samples, no model of the mechanism (the paper's "minimal assumptions").
    2. Under H0 the test's type-II error is >= f(alpha) (f is non-increasing). Count the
       Q samples with score <= t: K ~ Bin(n_q, beta_t). The p-value of H0 is
       P[Bin(n_q, f(alpha)) <= K] + gamma; reject when it is <= ``level``.

    Type-I control holds in finite samples for any score. Power needs a good score: under
    the monotone likelihood ratio assumption (e.g. the Gaussian mechanism, score = output)
    the threshold test is most powerful and a violation at alpha is detected.

    Assumption: the paper's exact CIPA statistic was not available to us (no code, text
    beyond the abstract unread); this construction follows the abstract's description.
    """
    p, q = _check_in_out(p_samples, q_samples)
    if not 0 < alpha < 1 or not 0 < level < 1 or not 0 < gamma_share < 1:
        raise ValueError(f"alpha, level, gamma_share must be in (0, 1): {alpha}, {level}, {gamma_share}")
    gamma = gamma_share * level
    t, _ = _conformal_threshold(p, alpha, gamma)
    k = int(np.sum(q <= t))
    f_a = float(np.clip(f(alpha), 0.0, 1.0))
    p_val = float(min(1.0, stats.binom.cdf(k, q.size, f_a) + gamma))
    return FDPAuditResult(p_val <= level, p_val, alpha, t, k / q.size, f_a, gamma)


def tradeoff_band(p_samples, q_samples, alphas, level: float = 0.05) -> dict[str, np.ndarray]:
    """Finite-sample simultaneous (1 - level) band for the trade-off function T(P, Q).

    Every threshold test phi_t ("score > t") has an operating point (a_t, b_t) with
    b_t >= T(a_t). With Clopper-Pearson bounds on a_t (from P) and b_t (from Q), shared
    by Bonferroni over the thresholds, for every alpha in ``alphas``:

    * upper band (valid for any score): T(alpha) <= min{ b_t^ub : a_t^ub <= alpha }
      (T is non-increasing, and T(a_t) <= b_t);
    * lower band (valid only when the score is a monotone likelihood ratio, so threshold
      tests are most powerful and b_t = T(a_t)): T(alpha) >= max{ b_t^lb : a_t^lb >= alpha }.

    The paper proves a distribution-free lower band impossible; ours needs MLR, as theirs.
    Thresholds are the P-sample quantiles at ``alphas`` (chosen from P alone).

    Returns:
        ``{"alpha", "lower", "upper", "type1_hat", "type2_hat"}`` arrays over ``alphas``.
    """
    p, q = _check_in_out(p_samples, q_samples)
    alphas = np.asarray(alphas, dtype=np.float64)
    if np.any((alphas <= 0) | (alphas >= 1)):
        raise ValueError("alphas must lie in (0, 1)")
    thr = np.quantile(p, 1 - alphas)  # one threshold per requested alpha
    fp = (p[None, :] > thr[:, None]).sum(1)  # type-I counts
    fn = (q[None, :] <= thr[:, None]).sum(1)  # type-II counts
    a = level / (4 * thr.size)  # four one-sided bounds per threshold
    a_ub, a_lb = cp_upper(fp, p.size, a), cp_lower(fp, p.size, a)
    b_ub, b_lb = cp_upper(fn, q.size, a), cp_lower(fn, q.size, a)
    upper = np.array([b_ub[a_ub <= x].min(initial=1.0) for x in alphas])
    lower = np.array([b_lb[a_lb >= x].max(initial=0.0) for x in alphas])
    upper = np.minimum(upper, 1 - alphas)  # T(alpha) <= 1 - alpha always
    return {"alpha": alphas, "lower": lower, "upper": upper, "type1_hat": fp / p.size, "type2_hat": fn / q.size}


def gaussian_mechanism(n: int, mu: float, seed: int, noise_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Outputs of M(D) = 0 + N(0, s^2) and M(D') = mu + N(0, s^2), s = ``noise_scale``.

    With s = 1 this is exactly mu-GDP. ``noise_scale=0.5`` is the "half the noise" bug:
    the mechanism is then (2 mu)-GDP while still claiming mu.
    """
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, noise_scale, n), rng.normal(mu, noise_scale, n)


# ---------------------------------------------------------------------------------------
# PLATFORM: accounting (Opacus)
# ---------------------------------------------------------------------------------------


def accountant_epsilon(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str = "rdp"
) -> float:
    """Epsilon of DP-SGD (Poisson subsampled Gaussian) from an Opacus accountant.

    ``accountant``: ``rdp`` (Mironov 2017), ``prv`` (Gopi et al. 2021) or ``gdp`` (CLT,
    Bu et al. 2020).
    """
    from opacus.accountants import create_accountant

    if accountant not in ("rdp", "prv", "gdp"):
        raise ValueError(f"unknown accountant {accountant!r}; expected rdp, prv or gdp")
    acc = create_accountant(accountant)
    acc.history = [(noise_multiplier, sample_rate, int(steps))]
    return float(acc.get_epsilon(delta=delta))


def noise_multiplier_for(target_eps: float, delta: float, sample_rate: float, steps: int, accountant: str = "rdp") -> float:
    """Opacus's noise multiplier reaching ``target_eps`` at ``delta`` after ``steps`` steps."""
    from opacus.accountants.utils import get_noise_multiplier

    return float(
        get_noise_multiplier(
            target_epsilon=target_eps, target_delta=delta, sample_rate=sample_rate, steps=steps, accountant=accountant
        )
    )
