"""Odd-k-out (OKO) set learning: the set sampler and the set loss.

Muttenthaler, Vandermeulen, Zhang, Unterthiner, Müller, "Set Learning for Accurate and
Calibrated Models" (ICLR 2024; seed 003 #7; round2_candidates.md §3.3). OKO "minimizes the
cross-entropy error for sets rather than for single examples":

* a training *set* has k + 2 examples: two of a "pair" class y_p and k examples of odd
  classes (each different from y_p);
* the model scores every example on its own; the set's logits are the **sum** of the
  per-example logits: ``z_S = sum_{x in S} f(x)``  (C,);
* hard target: ``L = CE(softmax(z_S), onehot(y_p))``;
  soft target: ``t = (2 onehot(y_p) + sum_odd onehot(y_o)) / (k + 2)``, ``L = -sum t log softmax(z_S)``.

At inference the model is applied to single examples, unchanged.

Assumption (beyond the abstract; from the authors' JAX reference ``OKOLoader``/``MakeSets``):
pair and odd classes are drawn uniformly among classes with enough examples, odd classes
without replacement when k <= C - 1; k = 1 by default.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from tasks.multiplicity.metrics import MultiplicityError


def make_sets(labels: np.ndarray, n_sets: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n_sets`` OKO sets from a labelled pool.

    Returns:
        ``idx`` (n_sets, k + 2): row indices into the pool, the two pair examples first;
        ``pair`` (n_sets,): the pair class of each set.
    """
    y = np.asarray(labels)
    classes, counts = np.unique(y, return_counts=True)
    pairable = classes[counts >= 2]
    if k < 1 or n_sets < 1:
        raise MultiplicityError(f"OKO needs k >= 1 and n_sets >= 1, got k={k}, n_sets={n_sets}")
    if len(pairable) == 0 or len(classes) < 2:
        raise MultiplicityError("OKO needs a class with >= 2 examples and at least 2 classes")
    by_class = {c: np.flatnonzero(y == c) for c in classes}
    idx = np.empty((n_sets, k + 2), dtype=np.int64)
    pair = rng.choice(pairable, size=n_sets)
    for s, yp in enumerate(pair):
        idx[s, :2] = rng.choice(by_class[yp], size=2, replace=False)
        others = classes[classes != yp]
        odd = rng.choice(others, size=k, replace=k > len(others))
        idx[s, 2:] = [rng.choice(by_class[c]) for c in odd]
    return idx, pair


def oko_loss(logits: torch.Tensor, set_labels: torch.Tensor, soft: bool = False) -> torch.Tensor:
    """Mean OKO loss of a batch of sets.

    Args:
        logits: (B, k + 2, C) per-example logits, the two pair examples first.
        set_labels: (B, k + 2) the examples' labels (the first two are the pair class).
        soft: soft targets ``(2 onehot(pair) + sum onehot(odd)) / (k + 2)`` instead of the hard pair class.
    """
    if logits.ndim != 3 or set_labels.shape != logits.shape[:2]:
        raise MultiplicityError(f"logits must be (B, k+2, C) and labels (B, k+2), got {tuple(logits.shape)}, "
                                f"{tuple(set_labels.shape)}")
    if not torch.equal(set_labels[:, 0], set_labels[:, 1]):
        raise MultiplicityError("the first two examples of every OKO set must share the pair class")
    z = logits.sum(dim=1)  # (B, C) set logits
    if not soft:
        return F.cross_entropy(z, set_labels[:, 0])
    target = F.one_hot(set_labels, z.shape[-1]).float().mean(dim=1)  # (2 e_pair + sum e_odd) / (k + 2)
    return -(target * F.log_softmax(z, dim=-1)).sum(-1).mean()
