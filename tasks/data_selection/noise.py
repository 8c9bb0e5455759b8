"""Label noise: an injector that records what it changed, and the TACRED paper's noise flaggers.

Parekh, Aldarmaki, et al., "Noise in Relation Classification Dataset TACRED: Characterization
and Reduction" (2023; seed 001_d31d1b4d47488510.txt). A relation dataset has one catch-all
*negative* class ("no-relation") and positive classes. The paper's two nearest-neighbour
strategies flag potentially noisy examples for elimination or reannotation:

* ``noise_intrinsic`` (IS, "based on the assumption that positive examples are clean"): the
  false-negative predictions — examples with a positive given label that a held-out model
  predicts as negative — are anchors; each anchor's ``k`` nearest negative-labelled neighbours
  (in ``features``) get a vote. Flags: negative-labelled examples with >= 1 vote, ranked by votes,
  ties by a lower held-out probability of the given label.
  Assumption (the abstract names the strategy, not its details; reading of the research note
  round2_candidates.md §1.1): anchors come from out-of-fold predictions on the pool itself
  (``probs``, cross-validated) rather than a separate dev set, and the vote tie-break is ours.
* ``noise_extrinsic`` (ES, "based on using a clean subset"): the target set is the clean subset
  (``features``, ``labels``); an example is flagged when the majority of its ``k`` nearest
  clean neighbours carry another label. ``positives=False`` checks negative-labelled examples
  only (TACRED-EN/RN); ``positives=True`` all of them (the paper's extension, TACRED-ENP/RNP).
  Score = share of the k clean neighbours that disagree (> 0.5 to be flagged).
* ``label_disagreement`` — baseline: 1 - held-out probability of the given label (the
  cross-validated "low self-confidence" ranking that confident learning starts from; cleanlab
  itself is not in requirements.lock, so its full rule is not run here).

Flaggers may return fewer than ``budget`` picks: only examples that meet their rule.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.data_selection.selection import Pool, selector
from tasks.platform.errors import ReprolabError
from tasks.platform.params import Seed

NOISE_RECORD_SCHEMA = pa.schema([("id", pa.int64()), ("old", pa.int64()), ("new", pa.int64())])


class NoiseParams(BaseModel):
    """What the injector changes (TACRED-like: most noise turns positives into "no-relation").

    Attributes:
        negative_class: the catch-all negative label.
        pos_to_neg: fraction of positive-labelled examples relabelled as negative.
        pos_to_pos: fraction of positive-labelled examples given another positive class.
        neg_to_pos: fraction of negative-labelled examples given a positive class.
        seed: which examples and new labels (one ``numpy`` Generator).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    negative_class: int = Field(default=0, ge=0)
    pos_to_neg: float = Field(default=0.3, ge=0.0, le=1.0)
    pos_to_pos: float = Field(default=0.05, ge=0.0, le=1.0)
    neg_to_pos: float = Field(default=0.0, ge=0.0, le=1.0)
    seed: Seed = 0

    @model_validator(mode="after")
    def _disjoint(self):
        if self.pos_to_neg + self.pos_to_pos > 1.0:
            raise ValueError(f"pos_to_neg + pos_to_pos = {self.pos_to_neg + self.pos_to_pos} > 1 "
                             "(each positive example is changed at most once)")
        return self


def inject_noise(ids: np.ndarray, labels: np.ndarray, n_classes: int, params: NoiseParams) -> tuple[np.ndarray, pa.Table]:
    """Flip labels as ``params`` says; return (new labels (n,), record of every change).

    Exactly ``round(rate * count)`` examples of each kind change, drawn without replacement,
    each exactly once; a new label always differs from the old one. The record
    (:data:`NOISE_RECORD_SCHEMA`: ``id``, ``old``, ``new``, sorted by id) lists those rows and no
    other. The input is not modified.
    """
    labels = np.asarray(labels, dtype=np.int64)
    ids = np.asarray(ids, dtype=np.int64)
    neg = params.negative_class
    if n_classes < 3 or not 0 <= neg < n_classes:
        raise ReprolabError(f"inject_noise: need >= 3 classes and negative_class in [0, {n_classes}), "
                            f"got {n_classes} classes, negative_class={neg}")
    if labels.shape != ids.shape or labels.min() < 0 or labels.max() >= n_classes:
        raise ReprolabError(f"inject_noise: labels must be (n,) in [0, {n_classes}) matching ids")
    rng = np.random.default_rng(params.seed)
    new = labels.copy()
    pos, negs = np.flatnonzero(labels != neg), np.flatnonzero(labels == neg)
    order = rng.permutation(pos)
    n_pn, n_pp = round(params.pos_to_neg * pos.size), round(params.pos_to_pos * pos.size)
    new[order[:n_pn]] = neg
    swap = order[n_pn:n_pn + n_pp]
    # another positive class: shift by 1..(P-1) within the positive classes
    positives = np.array([c for c in range(n_classes) if c != neg])
    rank = np.searchsorted(positives, labels[swap])
    new[swap] = positives[(rank + rng.integers(1, positives.size, size=swap.size)) % positives.size]
    n_np = round(params.neg_to_pos * negs.size)
    flip = rng.permutation(negs)[:n_np]
    new[flip] = rng.choice(positives, size=flip.size)
    changed = np.flatnonzero(new != labels)
    changed = changed[np.argsort(ids[changed], kind="stable")]
    record = pa.table({"id": ids[changed], "old": labels[changed], "new": new[changed]}, schema=NOISE_RECORD_SCHEMA)
    return new, record


def knn(x: np.ndarray, ref: np.ndarray, k: int, block: int = 2048) -> np.ndarray:
    """(n, k) positions in ``ref`` of the k nearest rows to each row of ``x`` (Euclidean), nearest first.

    ``argpartition`` then a stable sort of the k: O(n m) per block, not O(n m log m). NOTE: a tie
    at the k-th distance is broken by argpartition (deterministic, not by position)."""
    x, ref = np.asarray(x, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    k = min(k, ref.shape[0])
    rsq = np.einsum("ij,ij->i", ref, ref)
    out = []
    for i in range(0, x.shape[0], block):
        xb = x[i:i + block]
        d2 = rsq[None, :] - 2.0 * xb @ ref.T  # + |x|^2, constant per row
        part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < ref.shape[0] else np.broadcast_to(np.arange(k), d2.shape).copy()
        order = np.argsort(np.take_along_axis(d2, part, axis=1), axis=1, kind="stable")
        out.append(np.take_along_axis(part, order, axis=1))
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def _flag(scores: np.ndarray, eligible: np.ndarray, candidates: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``budget`` eligible candidates by score (stable), fewer when fewer are eligible."""
    cand = candidates[eligible[candidates]]
    order = np.argsort(-scores[cand], kind="stable")[:budget]
    return cand[order], scores[cand][order]


def _labels(pool: Pool, name: str = "labels") -> np.ndarray:
    lab = pool.view(name)
    if not np.issubdtype(lab.dtype, np.integer):
        raise ReprolabError(f"pool view {name!r} must hold integer labels, got dtype {lab.dtype}")
    return lab.astype(np.int64)


def given_label_prob(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) probability each row of ``probs`` (n, k) gives to its given label."""
    if labels.max() >= probs.shape[1]:
        raise ReprolabError(f"a label ({labels.max()}) is out of range for probs with {probs.shape[1]} classes")
    return probs[np.arange(labels.size), labels]


# PAPER: the TACRED strategies.


@selector("noise_intrinsic", needs=("features", "labels", "probs"),
          cite="TACRED noise paper, Intrinsic Strategy (false negatives -> nearest negatives)")
def _intrinsic(pool: Pool, budget: int, *, candidates, labelled, target, rng, k: int = 5, negative_class: int = 0):
    x, y, p = pool.view("features"), _labels(pool), pool.view("probs")
    is_neg = y == negative_class
    anchors = np.flatnonzero(~is_neg & (p.argmax(axis=1) == negative_class))  # false negatives
    negs = np.flatnonzero(is_neg)
    votes = np.zeros(len(pool))
    if anchors.size and negs.size:
        nn = negs[knn(x[anchors], x[negs], k)]
        np.add.at(votes, nn.reshape(-1), 1.0)
    # votes first; ties broken by a lower held-out probability of the given label (in [0, 1))
    scores = votes + (1.0 - given_label_prob(p, y)) * 0.999
    return _flag(scores, votes > 0, candidates, budget)


@selector("noise_extrinsic", needs=("features", "labels"), target_needs=("features", "labels"),
          cite="TACRED noise paper, Extrinsic Strategy (clean-subset nearest neighbours)")
def _extrinsic(pool: Pool, budget: int, *, candidates, labelled, target, rng, k: int = 5, negative_class: int = 0,
               positives: bool = False):
    x, y = pool.view("features"), _labels(pool)
    tx, ty = target.view("features"), _labels(target)
    nn = knn(x, tx, k)  # (n, k) into the clean subset
    disagree = (ty[nn] != y[:, None]).mean(axis=1)
    checked = np.ones(len(pool), bool) if positives else (y == negative_class)
    return _flag(disagree, checked & (disagree > 0.5), candidates, budget)


@selector("label_disagreement", needs=("labels", "probs"),
          cite="baseline: low held-out probability of the given label (confident learning's ranking)")
def _disagreement(pool: Pool, budget: int, *, candidates, labelled, target, rng):
    y, p = _labels(pool), pool.view("probs")
    scores = 1.0 - given_label_prob(p, y)
    return _flag(scores, p.argmax(axis=1) != y, candidates, budget)
