"""Label-noise cleaning as the TACRED paper's analogue runs it (tasks/papers/tacred_noise.py), as
reusable pieces: its params (:class:`CleanParams`), one seed's noisy views (:func:`noisy_views`:
clean subset, injected noise with its exact record, out-of-fold probabilities, embedding), every
flagger at the common cap (:func:`flag_all`) and flag precision/recall against the record
(:func:`detection`). The paper's stage adds the retraining of each data version; ``make
bench-data-peers`` hands cleanlab the same noisy labels and out-of-fold probabilities.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field

from models import ModelSpec
from tasks.data_prep import make_table, table_to_tensors
from tasks.data_selection.noise import NoiseParams, inject_noise
from tasks.data_selection.selection import Pool, select
from tasks.platform.params import Seeds
from tasks.train import OptimParams, fit, init_model, num_classes

FLAGGERS = {  # name -> (selector, options)
    "IS": ("noise_intrinsic", {}),
    "ES": ("noise_extrinsic", {"positives": False}),
    "ESP": ("noise_extrinsic", {"positives": True}),
    "LD": ("label_disagreement", {}),
}

class CleanParams(BaseModel):
    """The ``clean`` section.

    Attributes:
        noise: the injected noise (its ``seed`` is offset by each run's seed).
        clean_fraction: share of the training split kept clean (the Extrinsic Strategy's reference).
        folds: cross-validation folds for the out-of-fold probabilities (IS, LD).
        k: nearest neighbours of the IS and ES rules.
        max_flag_fraction: cap on every flagger's flags, as a share of the pool.
        model, optim: the MLP used everywhere (out-of-fold, embedding, every retrained version).
        seeds: one noise draw + clean subset + models per seed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    noise: NoiseParams = NoiseParams()
    clean_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    folds: int = Field(default=5, ge=2)
    k: int = Field(default=5, ge=1)
    max_flag_fraction: float = Field(default=0.4, gt=0.0, le=1.0)
    model: ModelSpec = ModelSpec(hidden=(64, 64))
    optim: OptimParams = OptimParams(max_epochs=30, batch_size=32, lr=2e-3)
    seeds: Seeds = (0, 1, 2, 3, 4)


def fit_mlp(p: CleanParams, x: np.ndarray, y: np.ndarray, ids: np.ndarray, val: pa.Table, k: int, seed: int) -> torch.nn.Module:
    table = make_table(ids, x, y)
    model = init_model(p.model, table, k, seed)
    fit(model, p.optim, table, val, seed)
    model.eval()
    return model


def noisy_views(p: CleanParams, seed: int, train: pa.Table, val: pa.Table, test: pa.Table) -> dict[str, object]:
    """Steps (1)-(2) of one seed: the clean subset, the injected noise (and its exact record),
    out-of-fold probabilities on the pool and the embedding; ``views`` / ``clean_set`` are the
    pools the flaggers read, ``cap`` their common flag budget. Also what ``make bench-data-peers``
    hands cleanlab (the same labels and out-of-fold probabilities)."""
    x, y_true, ids = (t.numpy() for t in table_to_tensors(train))
    k = num_classes(train, val, test)
    rng = np.random.default_rng(10_000 + seed)
    n = ids.size
    is_clean = np.zeros(n, bool)
    is_clean[rng.choice(n, size=max(k, round(p.clean_fraction * n)), replace=False)] = True
    pool = np.flatnonzero(~is_clean)
    # (1) noise on the pool only; the clean subset keeps true labels
    noisy_pool, record = inject_noise(ids[pool], y_true[pool], k, p.noise.model_copy(update={"seed": p.noise.seed + seed}))
    y = y_true.copy()
    y[pool] = noisy_pool
    # (2) out-of-fold probabilities on the pool; embedding from a model on all noisy data
    probs = np.zeros((n, k))
    fold = rng.permutation(pool.size) % p.folds
    for f in range(p.folds):
        tr = np.concatenate([pool[fold != f], np.flatnonzero(is_clean)])
        m = fit_mlp(p, x[tr], y[tr], ids[tr], val, k, 100 * seed + f)
        with torch.no_grad():
            probs[pool[fold == f]] = torch.softmax(m(torch.from_numpy(x[pool[fold == f]])), -1).double().numpy()
    full = fit_mlp(p, x, y, ids, val, k, 100 * seed + 99)
    with torch.no_grad():
        emb = full.features(torch.from_numpy(x)).double().numpy()
    probs[is_clean] = np.eye(k)[y[is_clean]]  # never flagged (labelled=), but views must be finite
    return {"x": x, "y_true": y_true, "y": y, "ids": ids, "k": k, "is_clean": is_clean, "pool": pool,
            "record": record, "probs": probs,
            "views": Pool(ids, {"features": emb, "labels": y, "probs": probs}),
            "clean_set": Pool(ids[is_clean], {"features": emb[is_clean], "labels": y[is_clean]}),
            "cap": max(1, round(p.max_flag_fraction * pool.size))}


def flag_all(p: CleanParams, seed: int, v: dict[str, object]) -> dict[str, object]:
    """Step (3): every flagger's :class:`Selection` at the common cap, plus ``random`` at ES+P's count."""
    neg, ids, is_clean = p.noise.negative_class, v["ids"], v["is_clean"]
    flags = {}
    for name, (sel, opts) in FLAGGERS.items():
        flags[name] = select(v["views"], v["cap"], selector=sel, labelled=ids[is_clean], target=v["clean_set"], seed=seed,
                             **(opts if sel == "label_disagreement" else {"k": p.k, "negative_class": neg, **opts}))
    flags["random"] = select(v["views"], max(1, len(flags["ESP"].ids)), selector="random", labelled=ids[is_clean], seed=seed)
    return flags


def detection(flags: pa.Table, record: pa.Table) -> dict[str, dict[int, dict[str, float]]]:
    """``{flagger: {seed: {precision, recall, neg_share}}}`` of the flags against the record."""
    noisy_ids: dict[int, set] = {}
    for r in record.to_pylist():
        noisy_ids.setdefault(r["seed"], set()).add(r["id"])
    out: dict[str, dict[int, dict[str, float]]] = {}
    rows = flags.to_pylist()
    for name in dict.fromkeys(r["flagger"] for r in rows):
        for seed in sorted(noisy_ids):
            ids = {r["id"] for r in rows if r["flagger"] == name and r["seed"] == seed}
            hit = len(ids & noisy_ids[seed])
            out.setdefault(name, {})[seed] = {"precision": hit / max(len(ids), 1),
                                              "recall": hit / max(len(noisy_ids[seed]), 1), "n_flags": float(len(ids))}
    return out
