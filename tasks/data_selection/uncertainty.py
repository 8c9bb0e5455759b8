"""Uncertainty selectors: entropy, margin, least confidence and BALD (MC dropout).

Each scores every unlabelled example from the current model's predictive distribution and
picks the ``budget`` highest scores (ties: lower pool position first, so the pick is a pure
function of the views).

* ``entropy``: H(p) = -sum_k p_k log p_k over ``probs`` (n, k).
* ``margin``: 1 - (p_(1) - p_(2)), the gap between the two most likely classes turned around so
  that a larger score is more uncertain (Scheffer et al. 2001; Settles' survey, "margin sampling").
* ``least_confidence``: 1 - max_k p_k.
* ``bald``: the mutual information between the prediction and the weights under MC dropout
  (Houlsby et al. 2011; Gal, Islam & Ghahramani 2017, eq. "BALD"):
  ``I = H(mean_s p_s) - mean_s H(p_s)`` over ``mc_probs`` (s, n, k), s stochastic forward passes.
"""

from __future__ import annotations

import numpy as np

from tasks.data_selection.selection import Pool, selector

def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy (nats) along ``axis`` of probabilities ``p``; 0 log 0 = 0 (no smoothing,
    so a hand-computed value matches exactly)."""
    p = np.asarray(p, dtype=np.float64)
    logp = np.log(np.where(p > 0, p, 1.0))
    return -(p * logp).sum(axis=axis)


def margin_scores(probs: np.ndarray) -> np.ndarray:
    """(n,) ``1 - (p_(1) - p_(2))`` of ``probs`` (n, k), k >= 2."""
    top2 = -np.sort(-np.asarray(probs, dtype=np.float64), axis=1)[:, :2]
    return 1.0 - (top2[:, 0] - top2[:, 1])


def least_confidence_scores(probs: np.ndarray) -> np.ndarray:
    """(n,) ``1 - max_k p_k``."""
    return 1.0 - np.asarray(probs, dtype=np.float64).max(axis=1)


def bald_scores(mc_probs: np.ndarray) -> np.ndarray:
    """(n,) BALD mutual information of ``mc_probs`` (s, n, k): H(E_s p) - E_s H(p)."""
    mc = np.asarray(mc_probs, dtype=np.float64)
    return entropy(mc.mean(axis=0)) - entropy(mc).mean(axis=0)


def top_k(scores: np.ndarray, candidates: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``budget`` candidates with the largest ``scores`` (stable: ties by position)."""
    s = scores[candidates]
    order = np.argsort(-s, kind="stable")[:budget]
    return candidates[order], s[order]


# PAPER: each selector is its score + top-k; select() has checked the views already.


def _register(name: str, score, view: str, cite: str) -> None:
    def fn(pool: Pool, budget: int, *, candidates, labelled, target, rng):
        return top_k(score(pool.view(view)), candidates, budget)

    fn.__name__ = f"_{name}"
    selector(name, needs=(view,), cite=cite)(fn)


for _name, _score, _view, _cite in (
    ("entropy", entropy, "probs", "predictive entropy (Shannon); AL baseline in Sener & Savarese 2018"),
    ("margin", margin_scores, "probs", "margin sampling (Scheffer et al. 2001)"),
    ("least_confidence", least_confidence_scores, "probs", "least-confidence sampling (Lewis & Gale 1994)"),
    ("bald", bald_scores, "mc_probs", "BALD over MC dropout (Houlsby et al. 2011; Gal et al. 2017)"),
):
    _register(_name, _score, _view, _cite)
