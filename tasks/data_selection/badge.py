"""BADGE: batch active learning by diverse, uncertain gradient lower bounds.

Ash, Zhang, Krishnamurthy, Langford & Agarwal, "Deep Batch Active Learning by Diverse, Uncertain
Gradient Lower Bounds" (ICLR 2020), Algorithm 1. A baseline the core-set paper did not have.

* **Gradient embedding** (Sec. 3): for an unlabelled x with penultimate features h(x) (d,) and
  predicted probabilities p(x) (k,), take the hallucinated label ŷ = argmax_i p_i and the
  gradient of the cross-entropy loss with respect to the last layer's weights W (k, d):

      g_x = (p - onehot(ŷ)) ⊗ h(x)        (k·d,), row c = (p_c - [c = ŷ]) h(x)

  Its norm is a lower bound on the gradient norm for any true label (uncertainty); its
  direction carries the example's features (diversity).
  NOTE: the authors' code stores the negated vector, ``(onehot - p) ⊗ h``; the sign changes no
  norm and no distance, so the picks are the same. scikit-activeml's ``Badge`` uses ours.
  The last layer's bias is not part of the embedding (the reference code omits it too).
* **k-means++ seeding** (Arthur & Vassilvitskii 2007) on the embeddings of the unlabelled
  candidates: the first centre is the candidate with the largest ‖g_x‖ (the reference code's
  choice, not a random draw), each next one is drawn with probability proportional to D²(x),
  its squared distance to the nearest centre chosen so far (seeded ``numpy`` Generator).
  As in the reference, the labelled set is not a set of centres: diversity is within the batch.

Speed: ``g_x`` has k·d entries, but its Gram structure factors,
``<g_x, g_y> = <a_x, a_y> <h_x, h_y>`` with ``a = p - onehot(ŷ)``, so the D² vector is updated
with one (n, k) and one (n, d) mat-vec per pick and the (n, k·d) embedding is never built
(:func:`badge_embeddings` builds it, for tests and the peer check). The D² update uses the
same Gram form as :func:`tasks.data_selection.kcenter.sq_distances_to` (clipped at 0).

Assumption (degenerate pools; the paper does not say): when every remaining candidate has
D² = 0 — all embeddings zero (a model saturated to one-hot probabilities, or dead ReLU features),
or every remaining one coincides with a centre — k-means++ has no distribution to sample from;
the rest of the batch is then drawn uniformly from the candidates not picked yet (scikit-activeml
does the same). Such picks get score 0, so the selection artifact shows where it happened. (A zero
embedding next to nonzero ones is not degenerate: it sits at the origin, at D² = ‖g_c‖² from a
centre c, and k-means++ treats the confident examples as one more cluster.)
Score of a pick = its D² when picked (the first pick: its squared norm ‖g_x‖²).
"""

from __future__ import annotations

import numpy as np

from tasks.data_selection.selection import Pool, selector
from tasks.platform.errors import ReprolabError


def _factors(probs: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    features = np.asarray(features, dtype=np.float64)
    if probs.ndim != 2 or features.ndim != 2 or probs.shape[0] != features.shape[0]:
        raise ReprolabError(f"badge needs probs (n, k) and features (n, d) of the same n, got {probs.shape} "
                            f"and {features.shape}")
    if probs.shape[1] < 2:
        raise ReprolabError(f"badge needs >= 2 classes in probs, got {probs.shape[1]}")
    a = probs.copy()
    a[np.arange(a.shape[0]), probs.argmax(axis=1)] -= 1.0  # p - onehot(argmax p)
    return a, features


def badge_embeddings(probs: np.ndarray, features: np.ndarray) -> np.ndarray:
    """(n, k·d) gradient embeddings ``(p - onehot(argmax p)) ⊗ h``: row-major, class-major
    (block c holds ``(p_c - [c = ŷ]) h``), the layout of ``W.grad.flatten()`` for W (k, d)."""
    a, h = _factors(probs, features)
    return (a[:, :, None] * h[:, None, :]).reshape(a.shape[0], -1)


def badge_kmeanspp(probs: np.ndarray, features: np.ndarray, candidates: np.ndarray, budget: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ seeding over the gradient embeddings of ``candidates`` (module docstring).

    Args:
        probs: (n, k) predicted probabilities of the whole pool.
        features: (n, d) penultimate features of the whole pool.
        candidates: positions that may be picked (the unlabelled ones).
        budget: batch size, <= len(candidates).
        rng: the only source of randomness.

    Returns:
        (picks (budget,) positions in pick order, D² of each pick when picked).
    """
    a, h = _factors(probs, features)
    cand = np.asarray(candidates, dtype=np.int64)
    if budget > cand.size:
        raise ReprolabError(f"badge: budget {budget} exceeds the {cand.size} candidates")
    a, h = a[cand], h[cand]
    sa, sh = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", h, h)
    sq = sa * sh  # ‖g‖² = ‖a‖² ‖h‖²
    picked = np.zeros(cand.size, dtype=bool)
    d2 = sq.copy()  # no centre yet: D² to the origin only matters for the first pick (argmax)
    picks, scores = [], []
    for i in range(budget):
        live = np.where(picked, 0.0, d2)
        total = live.sum()
        if total <= 0.0:  # degenerate: nothing left to sample from (module docstring)
            u = int(rng.choice(np.flatnonzero(~picked)))
            score = 0.0
        elif i == 0:
            u = int(np.argmax(live))  # PAPER (reference code): largest gradient norm first
            score = float(live[u])
        else:
            u = int(rng.choice(cand.size, p=live / total))  # PAPER: D² sampling
            score = float(live[u])
        picks.append(u)
        scores.append(score)
        picked[u] = True
        # D² update with the new centre u, Gram form: ‖g‖² + ‖g_u‖² - 2 <a, a_u><h, h_u>
        du = (a @ a[u]) * (h @ h[u])
        du *= -2.0
        du += sq
        du += sq[u]
        np.maximum(du, 0.0, out=du)
        d2 = du if i == 0 else np.minimum(d2, du)
    return cand[np.asarray(picks, dtype=np.int64)], np.asarray(scores)


@selector("badge", needs=("probs", "features"),
          cite="Ash et al. 2020, Alg. 1 (k-means++ on last-layer gradient embeddings)")
def _badge(pool: Pool, budget: int, *, candidates, labelled, target, rng):
    return badge_kmeanspp(pool.view("probs"), pool.view("features"), candidates, budget, rng)
