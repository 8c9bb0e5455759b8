"""Predictive-multiplicity metrics over a set of models, and the epsilon-Rashomon set.

After the definitions of the reference implementation of "Dropout-Based Rashomon Set
Exploration for Efficient Predictive Multiplicity Estimation" (Hsu et al., ICLR 2024;
``jpmorganchase/dropout-rashomon-set-exploration``, ``utils/evaluation.py`` @33779e8),
which follow Marx et al. 2020 (ambiguity, discrepancy), Black et al. 2022 (disagreement),
Watson-Daniels et al. 2023 (viable prediction range) and Hsu & Calmon 2022 (Rashomon
capacity). Notation:

* ``scores``: (m, n, c) float array, m models x n samples x c classes; each row a
  probability vector (sums to 1).
* ``base``: (n,) class decisions of the base (deployed) model; ``decisions = argmax scores``.
* ambiguity   = (1/n) sum_i 1[exists k: decisions[k, i] != base[i]]
* discrepancy = max_k (1/n) sum_i 1[decisions[k, i] != base[i]]
* disagreement_i = 2 (1 - sum_y mu_{i,y}^2), mu_{i,y} = share of models deciding y on i;
  for two classes this is the reference's 4 mu (1 - mu) (twice the probability that two
  models drawn with replacement disagree).
* VPR_i = max_k s_k(i) - min_k s_k(i), score variance_i = var_k s_k(i), with s_k(i) the
  score of sample i's *reference class* under model k.
* Rashomon capacity_i = 2 ** C_i, C_i the capacity (bits) of the channel k -> y with
  transition matrix ``scores[:, i, :]`` (Blahut-Arimoto); 1 when all models agree, at
  most min(m, c).

Models known only by their (m, n) decisions, none of them the base (the seeds of one arm of
another paper, :func:`seed_multiplicity`): ambiguity = share of non-unanimous samples (the
ambiguity w.r.t. any member), churn_jk = share of samples where models j and k differ,
discrepancy = max_jk churn_jk, churn = mean over pairs. Rashomon ratio (Semenova, Rudin &
Parr 2022) = share of models drawn uniformly from the hypothesis space whose loss is within
eps of the best; pattern Rashomon ratio = distinct decision patterns inside / all drawn.

Assumption: the reference scores the *true* test label for VPR/score variance; we score
the base model's predicted class, so no metric here needs a test label (the epsilon set is
defined on a held-out reference split, see :func:`epsilon_set`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tasks.platform.errors import ReprolabError

SUM_TOL = 1e-4  # float32 softmax rows sum to 1 within ~1e-6; lenient, never silent
METRICS = ("ambiguity", "discrepancy", "disagreement", "vpr", "score_variance", "rashomon_capacity")
SEED_METRICS = ("ambiguity", "churn", "discrepancy", "disagreement")


class MultiplicityError(ReprolabError):
    """Bad input to a multiplicity metric (shape, probabilities, epsilon)."""


class EmptyRashomonSetError(MultiplicityError):
    """The epsilon-Rashomon set has no member: no metric is defined on it."""


# PLATFORM: input checks shared by every metric ---------------------------------------------
def check_scores(scores: object, name: str = "scores") -> np.ndarray:
    """Validate an (m, n, c) probability array; return it as float64.

    Raises :class:`MultiplicityError` for ragged input (models with different numbers of
    samples or classes), a wrong rank, an empty axis, non-finite or negative values, or
    rows that do not sum to 1.
    """
    if isinstance(scores, Sequence) and not isinstance(scores, np.ndarray):
        try:
            shapes = {np.shape(s) for s in scores}
        except ValueError:
            raise MultiplicityError(f"{name} is ragged: a model's rows have different lengths") from None
        if len(shapes) > 1:
            raise MultiplicityError(f"{name} is ragged: models have shapes {sorted(shapes)}")
    try:
        p = np.asarray(scores, dtype=np.float64)
    except ValueError as e:
        raise MultiplicityError(f"{name} is ragged or not numeric: {e}") from None
    if p.ndim != 3:
        raise MultiplicityError(f"{name} must be (models, samples, classes), got shape {p.shape}")
    m, n, c = p.shape
    if m == 0 or n == 0:
        raise MultiplicityError(f"{name} is empty: shape {p.shape}")
    if c < 2:
        raise MultiplicityError(f"{name} must have at least 2 classes, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        k, i, _ = np.argwhere(~np.isfinite(p))[0]
        raise MultiplicityError(f"{name} has a non-finite value (model {k}, sample {i})")
    if p.min() < 0.0:
        k, i, _ = np.argwhere(p < 0)[0]
        raise MultiplicityError(f"{name} has a negative probability (model {k}, sample {i})")
    sums = p.sum(axis=2)
    if not np.allclose(sums, 1.0, atol=SUM_TOL):
        k, i = np.unravel_index(int(np.argmax(np.abs(sums - 1.0))), sums.shape)
        raise MultiplicityError(
            f"{name} rows must sum to 1: model {k}, sample {i} sums to {sums[k, i]:.6g}"
        )
    return p


def _check_base(base: object, n: int, c: int) -> np.ndarray:
    b = np.asarray(base)
    if b.shape != (n,):
        raise MultiplicityError(f"base decisions must have shape ({n},), got {b.shape}")
    if b.dtype.kind not in "iu" or (n and (b.min() < 0 or b.max() >= c)):
        raise MultiplicityError(f"base decisions must be class indices in [0, {c}), got {b.dtype} {b[:5]}")
    return b.astype(np.int64)


def check_eps(eps: float) -> float:
    """``eps`` as a float; :class:`MultiplicityError` if it is negative or not finite."""
    e = float(eps)
    if not np.isfinite(e) or e < 0:
        raise MultiplicityError(f"epsilon must be a finite number >= 0, got {eps!r}")
    return e


# PAPER: the epsilon-Rashomon set -----------------------------------------------------------
def epsilon_set(ref_losses: object, base_loss: float, eps: float) -> np.ndarray:
    """Mask of the models whose *reference-split* loss is within ``eps`` of the base model's.

    ``R_eps = {k : L_ref(k) <= L_ref(base) + eps}`` (the reference code uses the test loss
    and a strict ``<``; we use a held-out reference split so the set never sees test labels).

    Args:
        ref_losses: (m,) mean cross-entropy of each candidate on the reference split.
        base_loss: the base model's loss on the same split.
        eps: loss tolerance, >= 0.
    """
    e = check_eps(eps)
    losses = np.asarray(ref_losses, dtype=np.float64)
    if losses.ndim != 1:
        raise MultiplicityError(f"ref_losses must be 1-D (one per model), got shape {losses.shape}")
    if not (np.all(np.isfinite(losses)) and np.isfinite(base_loss)):
        raise MultiplicityError("ref_losses and base_loss must be finite")
    return losses <= float(base_loss) + e


def members(scores: np.ndarray, mask: np.ndarray, what: str = "epsilon set") -> np.ndarray:
    """``scores[mask]``; :class:`EmptyRashomonSetError` (naming ``what``) when nothing is in it."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (scores.shape[0],):
        raise MultiplicityError(f"mask must have shape ({scores.shape[0]},), got {mask.shape}")
    if not mask.any():
        raise EmptyRashomonSetError(
            f"the {what} is empty: none of {mask.size} candidate models is within epsilon of the base "
            "loss on the reference split; multiplicity is undefined (raise epsilon or sample more)"
        )
    return scores[mask]


# PAPER: decision-based metrics -------------------------------------------------------------
def ambiguity(scores: object, base: object) -> float:
    """Share of samples on which at least one model's decision differs from ``base``."""
    p = check_scores(scores)
    b = _check_base(base, p.shape[1], p.shape[2])
    return float(np.any(p.argmax(axis=2) != b[None, :], axis=0).mean())


def discrepancy(scores: object, base: object) -> float:
    """Largest share of samples on which one model's decisions differ from ``base``."""
    p = check_scores(scores)
    b = _check_base(base, p.shape[1], p.shape[2])
    return float((p.argmax(axis=2) != b[None, :]).mean(axis=1).max())


def disagreement(scores: object) -> np.ndarray:
    """Per-sample disagreement (n,): ``2 (1 - sum_y mu_y^2)``; 0 when all models agree."""
    p = check_scores(scores)
    return _decision_disagreement(p.argmax(axis=2))


def _decision_disagreement(dec: np.ndarray) -> np.ndarray:
    """(m, n) decisions -> (n,) ``2 (1 - sum_y mu_y^2)`` over the classes that occur."""
    mu = np.stack([(dec == y).mean(axis=0) for y in np.unique(dec)], axis=1)  # (n, classes seen)
    return 2.0 * (1.0 - (mu**2).sum(axis=1))


# PAPER: score-based metrics ----------------------------------------------------------------
def _reference_scores(p: np.ndarray, base: object) -> np.ndarray:
    b = _check_base(base, p.shape[1], p.shape[2])
    return np.take_along_axis(p, b[None, :, None].repeat(p.shape[0], 0), axis=2)[..., 0]  # (m, n)


def viable_prediction_range(scores: object, base: object) -> np.ndarray:
    """Per-sample VPR (n,): max minus min over models of the score of the base's class."""
    s = _reference_scores(check_scores(scores), base)
    return s.max(axis=0) - s.min(axis=0)


def score_variance(scores: object, base: object) -> np.ndarray:
    """Per-sample variance (n,) over models of the score of the base's class (ddof 0)."""
    return _reference_scores(check_scores(scores), base).var(axis=0)


def channel_capacity(channels: np.ndarray, tol: float = 1e-10, max_iter: int = 500) -> np.ndarray:
    """Capacity in bits of each channel by Blahut-Arimoto, vectorised over channels.

    Args:
        channels: (n, m, c): n channels with m inputs (models) and c outputs (classes);
            each row a distribution.
        tol: stop when the input distribution moves less than this (mean squared change).
        max_iter: iteration cap.

    Returns:
        (n,) capacities in bits, in [0, log2 min(m, c)].
    """
    P = np.clip(channels, 0.0, None)
    n, m, _ = P.shape
    r = np.full((n, m), 1.0 / m)
    logP = np.log(np.where(P > 0, P, 1.0))
    for _ in range(max_iter):
        q = r[:, :, None] * P  # (n, m, c) joint
        q = q / np.maximum(q.sum(axis=1, keepdims=True), 1e-300)  # posterior P(model | class)
        logq = np.log(np.where(q > 0, q, 1.0))
        new = np.exp((P * logq).sum(axis=2))  # prod_y q^P
        new = new / new.sum(axis=1, keepdims=True)
        done = np.mean((new - r) ** 2, axis=1).max() < tol
        r = new
        if done:
            break
    # I(W; Y) at the final input distribution: sum_k r_k sum_y P_ky log(P_ky / P_y)
    py = np.einsum("nm,nmc->nc", r, P)
    logpy = np.log(np.where(py > 0, py, 1.0))
    info = np.einsum("nm,nmc->n", r, P * (logP - logpy[:, None, :]))
    return np.clip(info, 0.0, None) / np.log(2.0)


def rashomon_capacity(scores: object) -> np.ndarray:
    """Per-sample Rashomon capacity (n,) = 2 ** capacity in bits; 1 when all models agree."""
    p = check_scores(scores)
    return 2.0 ** channel_capacity(np.transpose(p, (1, 0, 2)))


def multiplicity(scores: object, base: object, capacity: bool = True) -> dict[str, float]:
    """All six metrics of one model set, per-sample ones averaged over samples.

    Returns ``ambiguity``, ``discrepancy``, ``disagreement``, ``vpr``, ``score_variance``,
    ``rashomon_capacity`` (NaN when ``capacity=False``: it is the slowest) and ``n_models``.
    """
    p = check_scores(scores)
    return {
        "ambiguity": ambiguity(p, base),
        "discrepancy": discrepancy(p, base),
        "disagreement": float(disagreement(p).mean()),
        "vpr": float(viable_prediction_range(p, base).mean()),
        "score_variance": float(score_variance(p, base).mean()),
        "rashomon_capacity": float(rashomon_capacity(p).mean()) if capacity else float("nan"),
        "n_models": float(p.shape[0]),
    }


# PAPER: multiplicity of models known only by their decisions (e.g. the seeds of one arm) ---
def check_decisions(decisions: object, name: str = "decisions") -> np.ndarray:
    """Validate an (m, n) array of class decisions with m >= 2 models; return it as int64."""
    try:
        d = np.asarray(decisions)
    except ValueError as e:
        raise MultiplicityError(f"{name} is ragged: {e}") from None
    if d.dtype == object:
        raise MultiplicityError(f"{name} is ragged: models decide on different numbers of samples")
    if d.ndim != 2 or d.shape[0] < 2 or d.shape[1] == 0:
        raise MultiplicityError(f"{name} must be (models >= 2, samples >= 1), got shape {d.shape}")
    if d.dtype.kind not in "iu" or d.min() < 0:
        raise MultiplicityError(f"{name} must be non-negative class indices, got {d.dtype}")
    return d.astype(np.int64)


def pairwise_churn(decisions: object) -> np.ndarray:
    """(m, m) churn matrix: share of samples on which models j and k decide differently."""
    d = check_decisions(decisions)
    return (d[:, None, :] != d[None, :, :]).mean(axis=2)


def seed_multiplicity(decisions: object) -> dict[str, float]:
    """Multiplicity of a set of models given their (m, n) decisions, none of them privileged.

    For the seeds of one training recipe (an "arm"): how much do its predictions move when
    only the seed changes? With every member taken as the base in turn:

    * ``ambiguity``: share of samples whose decision is not unanimous (the ambiguity of the
      set w.r.t. *any* of its members, so no base model needs choosing);
    * ``discrepancy``: the largest churn between two members (max over bases of discrepancy);
    * ``churn``: the mean churn over the m (m - 1) / 2 pairs (expected churn of a retrain);
    * ``disagreement``: mean over samples of ``2 (1 - sum_y mu_y^2)``;
    * ``n_models``: m.
    """
    d = check_decisions(decisions)
    m = d.shape[0]
    pc = pairwise_churn(d)
    upper = pc[np.triu_indices(m, k=1)]
    return {
        "ambiguity": float(np.any(d != d[:1], axis=0).mean()),
        "discrepancy": float(upper.max()),
        "churn": float(upper.mean()),
        "disagreement": float(_decision_disagreement(d).mean()),
        "n_models": float(m),
    }


def decisions_by_seed(predictions: object, model: str) -> np.ndarray:
    """(seeds, items) decisions of ``model`` from a long predictions table.

    Args:
        predictions: ``pa.Table`` with columns ``model``, ``seed``, ``id``, ``pred`` (the
            item-level table of :func:`tasks.train.evaluate_classifier`).
        model: the value of ``model`` to pivot.

    Rows are seeds in increasing order, columns items in increasing ``id``; every seed must
    have scored the same items (else :class:`MultiplicityError` names the seed).
    """
    df = predictions.select(["model", "seed", "id", "pred"]).to_pandas()
    df = df[df["model"] == model]
    if df.empty:
        raise MultiplicityError(f"predictions have no rows for model {model!r}")
    wide = df.pivot(index="seed", columns="id", values="pred").sort_index()
    if wide.isna().any().any():
        seed = wide.index[wide.isna().any(axis=1)][0]
        raise MultiplicityError(f"predictions of {model!r}: seed {seed} lacks items the other seeds scored")
    return wide.to_numpy().astype(np.int64)


# PAPER: Rashomon ratio (Semenova, Rudin & Parr, "On the Existence of Simpler Machine Learning
# Models", FAccT 2022; seed 003 #36) -------------------------------------------------------
def rashomon_ratio(losses: object, eps: float, best_loss: float | None = None) -> float:
    """Monte Carlo estimate of the Rashomon ratio ``V(R(F, eps)) / V(F)``.

    ``R(F, eps) = {f in F : L(f) <= L(f*) + eps}``; with models drawn uniformly from the
    hypothesis space F (or F enumerated, when finite), the ratio of volumes is estimated by
    the share of draws inside the set.

    Args:
        losses: (k,) empirical loss of each drawn model (on the data the ratio describes).
        eps: the Rashomon parameter (theta in the paper), >= 0.
        best_loss: ``L(f*)`` when an optimiser over F found it; default the best draw's.

    Assumption: the paper's volume is over a parameter space with a uniform prior; we
    estimate it with uniform draws and say so; a ratio of 0 (no draw inside) is a valid
    estimate, not an error.
    """
    e = check_eps(eps)
    v = np.asarray(losses, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise MultiplicityError(f"losses must be a non-empty 1-D array (one per drawn model), got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise MultiplicityError("losses must be finite")
    best = float(v.min()) if best_loss is None else float(best_loss)
    if not np.isfinite(best) or best > v.min():
        raise MultiplicityError(
            f"best_loss {best_loss!r} must be finite and <= every drawn model's loss (min {v.min():.6g})"
        )
    return float((v <= best + e).mean())


def pattern_rashomon_ratio(decisions: object, mask: object) -> float:
    """Pattern Rashomon ratio: distinct prediction patterns inside the set over those of all draws.

    Args:
        decisions: (k, n) decisions of k drawn models on n samples.
        mask: (k,) bool, the draws inside the Rashomon set (e.g. ``losses <= best + eps``).
    """
    d = check_decisions(decisions)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (d.shape[0],):
        raise MultiplicityError(f"mask must have shape ({d.shape[0]},), got {mask.shape}")
    inside = np.unique(d[mask], axis=0).shape[0] if mask.any() else 0
    return inside / np.unique(d, axis=0).shape[0]
