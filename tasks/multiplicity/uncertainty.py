"""Information-theoretic measures of predictive uncertainty over an ensemble (a posterior sample).

After Schweighofer et al., "On Information-Theoretic Measures of Predictive Uncertainty"
(seed 003 #56; round2_candidates.md §3.4): a measure is a cross-entropy between the
*predicting model* (I) and an *approximation of the true predictive* (II); each splits into
an aleatoric part (expected entropy) and an epistemic part (a KL term). With ensemble
members ``p_k`` (k = 1..M, a sample from the posterior), one member ``p_1`` standing for the
single trained model, and the BMA ``pbar = mean_k p_k``:

========  ==================  ======================  ===========================  ==========================
measure   (I) predicting      (II) true approx.       total                        epistemic
========  ==================  ======================  ===========================  ==========================
``A``     member p_1          member p_1              H(p_1)                       0
``B``     member p_1          posterior p_k           E_k CE(p_k, p_1)             E_k KL(p_k || p_1)
``C``     posterior p_k       posterior p_k'          E_k E_k' CE(p_k', p_k)       E_k E_k' KL(p_k' || p_k)
``D``     BMA pbar            posterior p_k           H(pbar)                      E_k KL(p_k || pbar) (= MI)
========  ==================  ======================  ===========================  ==========================

aleatoric = total - epistemic: H(p_1) for A; E_k H(p_k) for B, C and D.

Assumption: the grid above is our reading of the abstract's two factors (the exact set of
measures must come from the paper); ``B`` and ``C`` follow the expected-cross-entropy form.
"""

from __future__ import annotations

import numpy as np

from tasks.multiplicity.metrics import MultiplicityError, check_scores

MEASURES = ("A", "B", "C", "D")
PARTS = ("total", "aleatoric", "epistemic")
_TINY = 1e-12


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, _TINY, 1.0))).sum(-1)


def _ce(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Cross-entropy CE(p, q) = -sum p log q over the last axis (broadcasting)."""
    return -(p * np.log(np.clip(q, _TINY, 1.0))).sum(-1)


def uncertainty(probs: object, measure: str) -> dict[str, np.ndarray]:
    """Per-sample ``total``, ``aleatoric`` and ``epistemic`` uncertainty (nats) of ``measure``.

    Args:
        probs: (M, n, c) member probabilities (M >= 1; ``B``/``C``/``D`` need M >= 2 to have
            any epistemic part); member 0 is the "single model".
        measure: one of :data:`MEASURES`.
    """
    if measure not in MEASURES:
        raise MultiplicityError(f"unknown uncertainty measure {measure!r}; choose from {list(MEASURES)}")
    p = check_scores(probs, "probs")
    p1, pbar = p[0], p.mean(0)
    eh = _entropy(p).mean(0)  # expected entropy E_k H(p_k)
    if measure == "A":
        total = _entropy(p1)
        return {"total": total, "aleatoric": total, "epistemic": np.zeros_like(total)}
    if measure == "B":
        total = _ce(p, p1[None]).mean(0)
    elif measure == "C":
        total = _ce(p[None, :], p[:, None]).mean((0, 1))  # [k, k'] = CE(p_k', p_k)
    else:
        total = _entropy(pbar)
    return {"total": total, "aleatoric": eh, "epistemic": np.clip(total - eh, 0.0, None)}
