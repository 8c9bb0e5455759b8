"""One pool-based active-learning loop and its score, the area under the learning curve.

``active_learning(params, selector, seed, train=, val=, test=)``: label ``init_size`` random
training examples; then for ``rounds`` rounds train a fresh model (``tasks.train.fit``, seeded)
on the labelled set, record its test accuracy and the covering radius of the labelled set, and
ask :func:`~tasks.data_selection.selection.select` for ``batch_size`` more from the unlabelled
rest of the training split. The pool's views come from the round's model: ``probs`` (eval
mode), ``mc_probs`` (``mc_samples`` passes with dropout on) and ``features`` (the penultimate
layer, Sener & Savarese's embedding), computed only when the selector needs them.

Deterministic per seed: the initial set, every model's init and data order, the MC-dropout
masks and every selector's randomness derive from ``seed`` and the round.

:func:`aulc`: trapezoid area under (labelled-set size, test accuracy), divided by the width
of the size range, so it is the curve's mean accuracy in [0, 1] (the ALC of the AL
literature, normalised).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field

from models import ModelSpec
from tasks.data_prep import table_to_tensors
from tasks.data_selection.kcenter import covering_radius
from tasks.data_selection.selection import SELECTION_SCHEMA, Pool, get_selector, select
from tasks.platform.errors import ReprolabError
from tasks.train import OptimParams, fit, init_model, num_classes, torch_threads

CURVE_SCHEMA = pa.schema([
    ("selector", pa.string()), ("seed", pa.int64()), ("round", pa.int64()), ("n_labelled", pa.int64()),
    ("test_acc", pa.float64()), ("covering_radius", pa.float64()),
])
#: Every round's selection artifact (``Selection.to_table()``) under its run's keys.
PICKS_SCHEMA = pa.schema([("selector", pa.string()), ("seed", pa.int64()), ("round", pa.int64()), *SELECTION_SCHEMA])


class ALParams(BaseModel):
    """One active-learning run.

    Attributes:
        init_size: random examples labelled before round 0.
        batch_size: examples queried per round.
        rounds: query rounds (the curve has ``rounds + 1`` points).
        model: the classifier retrained from scratch every round (needs ``dropout > 0`` for BALD).
        optim: its optimiser settings.
        mc_samples: stochastic forward passes for ``mc_probs``.

    The logged covering radius is over the raw input features (comparable across rounds and
    selectors; the selectors' embedding changes every round).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    init_size: int = Field(default=50, ge=1)
    batch_size: int = Field(default=50, ge=1)
    rounds: int = Field(default=8, ge=1)
    model: ModelSpec = ModelSpec(hidden=(128,), dropout=0.25)
    optim: OptimParams = OptimParams(max_epochs=30, batch_size=32)
    mc_samples: int = Field(default=20, ge=2)


@torch.no_grad()
def pool_views(model: torch.nn.Module, x: torch.Tensor, needs: tuple[str, ...], mc_samples: int, seed: int) -> dict[str, np.ndarray]:
    """The views a selector needs from ``model`` on pool inputs ``x`` (n, d)."""
    views: dict[str, np.ndarray] = {}
    model.eval()
    if "probs" in needs:
        views["probs"] = torch.softmax(model(x), -1).double().numpy()
    if "features" in needs:
        views["features"] = model.features(x).double().numpy()  # penultimate layer (MLP.features)
    if "mc_probs" in needs:
        model.train()  # dropout on; no gradient, no optimiser: the weights do not move
        torch.manual_seed(seed)
        views["mc_probs"] = torch.stack([torch.softmax(model(x), -1) for _ in range(mc_samples)]).double().numpy()
        model.eval()
    return views


def aulc(n_labelled: np.ndarray, acc: np.ndarray) -> float:
    """Normalised area under the learning curve: trapezoid over sizes / (max size - min size)."""
    n, a = np.asarray(n_labelled, dtype=float), np.asarray(acc, dtype=float)
    if n.size < 2 or np.any(np.diff(n) <= 0):
        raise ReprolabError(f"aulc needs >= 2 points at increasing sizes, got {n.tolist()}")
    return float(np.sum((a[1:] + a[:-1]) / 2.0 * np.diff(n)) / (n[-1] - n[0]))


def active_learning(params: ALParams, selector: str, seed: int, *, train: pa.Table, val: pa.Table, test: pa.Table,
                    options: dict[str, Any] | None = None) -> tuple[pa.Table, pa.Table]:
    """Run the loop; return the learning curve (:data:`CURVE_SCHEMA`, one row per round) and every
    round's picks (:data:`PICKS_SCHEMA`: ids, ranks, scores and the reason)."""
    entry = get_selector(selector)
    n_pool = train.num_rows
    need = params.init_size + params.rounds * params.batch_size
    if need > n_pool:
        raise ReprolabError(f"active learning: init_size + rounds * batch_size = {need} exceeds the "
                            f"{n_pool} training examples")
    x, _, ids = table_to_tensors(train)
    xt, yt, _ = table_to_tensors(test)
    ids_np = ids.numpy()
    order = np.argsort(ids_np)  # id -> position
    raw = x.double().numpy()
    k = num_classes(train, val, test)
    rng = np.random.default_rng(seed)
    labelled = np.sort(rng.choice(n_pool, size=params.init_size, replace=False))
    rows, picks = [], []
    with torch_threads():
        for r in range(params.rounds + 1):
            model = init_model(params.model, train, k, seed)
            fit(model, params.optim, train.take(pa.array(labelled)), val, seed + 1000 * r)
            model.eval()
            with torch.no_grad():
                acc = float((model(xt).argmax(-1) == yt).float().mean())
            rows.append({"selector": selector, "seed": seed, "round": r, "n_labelled": int(labelled.size),
                         "test_acc": acc, "covering_radius": covering_radius(raw, labelled)})
            if r == params.rounds:
                break
            views = pool_views(model, x, entry.needs, params.mc_samples, seed + 1000 * r)
            pick = select(Pool(ids_np, views), params.batch_size, selector=selector, labelled=ids_np[labelled],
                          seed=seed + 1000 * r, **(options or {}))
            t = pick.to_table()
            keys = {"selector": [selector] * t.num_rows, "seed": [seed] * t.num_rows, "round": [r] * t.num_rows}
            picks.append(pa.table({**keys, **{c: t.column(c) for c in t.column_names}}, schema=PICKS_SCHEMA))
            labelled = np.sort(np.concatenate([labelled, order[np.searchsorted(ids_np[order], pick.ids)]]))
    picked = pa.concat_tables(picks) if picks else PICKS_SCHEMA.empty_table()
    return pa.Table.from_pylist(rows, schema=CURVE_SCHEMA), picked
