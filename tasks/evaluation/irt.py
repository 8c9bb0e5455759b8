"""Two-parameter logistic (2PL) item response theory over a models x items correctness matrix.

Follows the measurement model used by "Lost in Benchmarks? Rethinking Large Language Model
Benchmarking with Item Response Theory" (arXiv 2505.15055) in its simplest classical form
(their PSN-IRT estimates more item parameters with a network; we fit the 2PL directly):

    P(y_ij = 1) = sigmoid( a_j * (theta_i - b_j) )                                   (2PL)

with model (person) ability theta_i, item difficulty b_j and item discrimination a_j > 0.

Estimation: joint maximum a posteriori over (theta, log a, b) with weak Gaussian priors
``theta ~ N(0, 1)``, ``log a ~ N(0, sigma_log_a^2)``, ``b ~ N(0, sigma_b^2)``, by L-BFGS with an
analytic gradient. Assumption: we use joint MAP instead of marginal ML (girth's ``twopl_mml``)
because our matrices have few "persons" (a handful of trained models) and many items; the
priors keep every estimate finite (items everyone answers correctly, perfect models) where
marginal ML with ~10 persons is ill-posed. The prior on theta fixes the scale/location.
``tests/evaluation/test_irt.py`` checks recovery on simulated 2PL data and agreement with
girth's MML on a matrix large enough for both.

Uncertainty: standard errors from the conditional Fisher information (Laplace approximation
of each parameter given the others), e.g. ``se(theta_i) = (sum_j a_j^2 P_ij (1 - P_ij) + 1)^-1/2``.
They ignore the covariance between item and ability estimates, so they are approximate.

Non-discriminating items are flagged when (a) every model gives the same answer (no
information), (b) the fitted discrimination is below ``a_min``, or (c) the item's correctness
correlates non-positively with ability (stronger models do no better; the 2PL's a > 0 cannot
express that, so it is checked directly).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import optimize
from scipy.special import expit

__all__ = ["IRTFit", "fit_2pl", "item_separation"]


@dataclass(frozen=True)
class IRTFit:
    """Result of `fit_2pl`. Shapes: M models, I items.

    Attributes:
        ability: (M,) theta_i.
        ability_se: (M,) approximate standard error of theta_i.
        difficulty: (I,) b_j.
        difficulty_se: (I,) approximate standard error of b_j.
        discrimination: (I,) a_j > 0.
        discrimination_se: (I,) approximate standard error of a_j (delta method on log a).
        ability_corr: (I,) Pearson correlation of item correctness with ability (NaN if the
            item is constant).
        flags: (I,) reason string per item: "" (fine), "constant", "low_discrimination" or
            "negative_correlation".
        converged: whether L-BFGS reported success.
        n_iter: optimizer iterations.
        neg_log_posterior: objective at the optimum.
    """

    ability: np.ndarray
    ability_se: np.ndarray
    difficulty: np.ndarray
    difficulty_se: np.ndarray
    discrimination: np.ndarray
    discrimination_se: np.ndarray
    ability_corr: np.ndarray
    flags: np.ndarray
    converged: bool
    n_iter: int
    neg_log_posterior: float
    settings: dict = field(default_factory=dict)

    @property
    def non_discriminating(self) -> np.ndarray:
        """(I,) bool mask of flagged items."""
        return self.flags != ""

    def prob_correct(self) -> np.ndarray:
        """(M, I) fitted P(correct)."""
        return expit(self.discrimination * (self.ability[:, None] - self.difficulty))


def _check_responses(responses: object) -> np.ndarray:
    y = np.asarray(responses)
    if y.ndim != 2:
        raise ValueError(f"responses must be a 2-D (models x items) array, got shape {y.shape}")
    if y.shape[0] < 2:
        raise ValueError(f"responses needs at least 2 models (rows), got {y.shape[0]}")
    if y.shape[1] < 1:
        raise ValueError("responses has no items (columns)")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        r, c = np.argwhere(~np.isfinite(y))[0]
        raise ValueError(f"responses has a non-finite value at model {r}, item {c}")
    if y.dtype.kind not in "biuf" or not np.all((y == 0) | (y == 1)):
        raise ValueError("responses must contain only 0/1 (or bool) correctness values")
    return y.astype(np.float64)


def _corr_with(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of vector x (M,) with each column of y (M, I); NaN for constant columns."""
    xc = x - x.mean()
    yc = y - y.mean(axis=0)
    denom = np.sqrt((xc**2).sum() * (yc**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (xc @ yc) / denom, np.nan)


# PAPER: the 2PL fit --------------------------------------------------------------------------
def fit_2pl(
    responses: object,
    sigma_log_a: float = 1.0,
    sigma_b: float = 3.0,
    a_min: float = 0.35,
    max_iter: int = 2000,
) -> IRTFit:
    """Fit a 2PL model to a (models x items) 0/1 correctness matrix by joint MAP.

    Args:
        responses: (M, I) array of 0/1 (or bool); row i = model i, column j = test item j.
            NOTE: girth uses the transposed layout (items x persons).
        sigma_log_a: prior std of log discrimination (prior median a = 1).
        sigma_b: prior std of difficulty.
        a_min: items with fitted discrimination below this are flagged "low_discrimination".
        max_iter: L-BFGS iteration cap.

    Returns:
        An `IRTFit`.
    """
    for name, val in (("sigma_log_a", sigma_log_a), ("sigma_b", sigma_b), ("a_min", a_min)):
        if not (np.isfinite(val) and val > 0):
            raise ValueError(f"{name} must be a positive finite number, got {val}")
    y = _check_responses(responses)  # (M, I)
    n_models, n_items = y.shape

    def unpack(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return v[:n_models], v[n_models : n_models + n_items], v[n_models + n_items :]

    def objective(v: np.ndarray) -> tuple[float, np.ndarray]:
        theta, log_a, b = unpack(v)
        a = np.exp(log_a)
        z = a * (theta[:, None] - b)  # (M, I) logits
        # -log-likelihood of Bernoulli(sigmoid(z)): log(1 + e^z) - y z
        nll = np.sum(np.logaddexp(0.0, z) - y * z)
        prior = 0.5 * (theta @ theta + (log_a @ log_a) / sigma_log_a**2 + (b @ b) / sigma_b**2)
        r = y - expit(z)  # (M, I) residuals = d loglik / dz
        g_theta = -(r @ a) + theta
        g_log_a = -np.sum(r * z, axis=0) + log_a / sigma_log_a**2  # dz/dlog a = z
        g_b = np.sum(r, axis=0) * a + b / sigma_b**2  # dz/db = -a
        return float(nll + prior), np.concatenate([g_theta, g_log_a, g_b])

    # Initialise from raw proportions correct (clipped logits), which also fixes the sign.
    p_model = np.clip(y.mean(axis=1), 0.02, 0.98)
    p_item = np.clip(y.mean(axis=0), 0.02, 0.98)
    theta0 = np.log(p_model / (1 - p_model))
    theta0 = (theta0 - theta0.mean()) / (theta0.std() or 1.0)
    b0 = -np.log(p_item / (1 - p_item))
    v0 = np.concatenate([theta0, np.zeros(n_items), b0])
    res = optimize.minimize(objective, v0, jac=True, method="L-BFGS-B",
                            options={"maxiter": max_iter, "maxfun": 4 * max_iter})
    theta, log_a, b = unpack(res.x)
    a = np.exp(log_a)
    # NOTE: the joint MAP trades scale between theta and a (both priors prefer a compressed
    # theta with a larger a), so report on the conventional identified scale: abilities of the
    # fitted models standardised to mean 0, SD 1. The likelihood is invariant under
    # theta' = (theta - m) / s, b' = (b - m) / s, a' = a s.
    m, s = theta.mean(), theta.std()
    s = s if s > 1e-8 else 1.0
    theta, b, a = (theta - m) / s, (b - m) / s, a * s

    # Conditional Fisher information (+ prior precision) -> approximate standard errors.
    # Computed on the standardised scale, where the priors are not what was optimised, so the
    # prior precision terms are left out (pure Fisher information, floored for constant items).
    z = a * (theta[:, None] - b)
    w = expit(z) * (1.0 - expit(z))  # (M, I) Bernoulli variance
    theta_se = 1.0 / np.sqrt(np.maximum(w @ (a**2), 1e-12))
    b_se = 1.0 / np.sqrt(np.maximum(a**2 * w.sum(axis=0), 1e-12))
    a_se = a / np.sqrt(np.maximum(np.sum(w * z**2, axis=0), 1e-12))

    # Flags: no information, weak slope, or stronger models do not do better.
    corr = _corr_with(theta, y)
    flags = np.full(n_items, "", dtype=object)
    flags[a < a_min] = "low_discrimination"
    flags[np.nan_to_num(corr, nan=1.0) <= 0.0] = "negative_correlation"
    flags[np.all(y == y[0], axis=0)] = "constant"
    return IRTFit(
        ability=theta, ability_se=theta_se, difficulty=b, difficulty_se=b_se,
        discrimination=a, discrimination_se=a_se, ability_corr=corr, flags=flags.astype(str),
        converged=bool(res.success), n_iter=int(res.nit), neg_log_posterior=float(res.fun),
        settings={"sigma_log_a": sigma_log_a, "sigma_b": sigma_b, "a_min": a_min},
    )


def item_separation(fit: IRTFit, models: list[int] | np.ndarray | None = None) -> np.ndarray:
    """How strongly each item separates a set of models under the fitted 2PL.

    Separation of item j = ``P_j(theta_max) - P_j(theta_min)`` over the chosen models: the gap
    in predicted probability of a correct answer between the strongest and the weakest of
    them (P is monotone in theta, so this is the largest pairwise gap).

    Args:
        fit: a fitted `IRTFit`.
        models: row indices of the models to separate (default: all).

    Returns:
        (I,) separation in [0, 1].
    """
    idx = np.arange(fit.ability.shape[0]) if models is None else np.asarray(models, dtype=int)
    if idx.size < 2:
        raise ValueError("item_separation needs at least 2 models")
    if idx.min() < 0 or idx.max() >= fit.ability.shape[0]:
        raise ValueError(f"model indices out of range [0, {fit.ability.shape[0]}): {idx.tolist()}")
    th = fit.ability[idx]
    hi = expit(fit.discrimination * (th.max() - fit.difficulty))
    lo = expit(fit.discrimination * (th.min() - fit.difficulty))
    return hi - lo
