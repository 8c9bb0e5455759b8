"""The model zoo: models of graded capacity x seeds x training fractions, with per-item
probabilities on the reference (``val``) and ``test`` splits.

Shared by the churn, uncertainty and PSN-IRT papers (round2_candidates.md §3.0): one
artifact holds, for one dataset, every model's softmax output on every reference and test
item, so response matrices (IRT), ensembles (uncertainty) and Rashomon sets over a zoo are
plain table operations.

Families and their capacity knob:

==========  ===================================  ======================
family      model                                capacity
==========  ===================================  ======================
logreg      sklearn LogisticRegression           inverse regularisation C
tree        sklearn DecisionTreeClassifier       max_depth
forest      sklearn RandomForestClassifier       n_estimators
boosting    sklearn HistGradientBoostingClassif. max_iter
knn         sklearn KNeighborsClassifier         1 / n_neighbors
mlp         models.MLP (torch, tasks.train.fit)  hidden width (2 layers)
==========  ===================================  ======================

Each model is trained on a stratified fraction of the ``train`` split drawn with its seed.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from models import ModelSpec
from tasks.data_prep import table_to_tensors
from tasks.platform.errors import ArtifactError
from tasks.multiplicity.metrics import MultiplicityError, check_scores
from tasks.train import OptimParams, fit, init_model, num_classes

FAMILIES = ("logreg", "tree", "forest", "boosting", "knn", "mlp")
ZOO_SPLITS = ("val", "test")


class ZooParams(BaseModel):
    """Params of a ``zoo_<dataset>`` stage.

    Attributes:
        capacities: family -> capacity settings (see the module table); a family left out
            is not trained.
        seeds: seeds of every stochastic model (and of the training subsample).
        fractions: training fractions of the ``train`` split, in (0, 1].
        mlp_optim: optimisation of the MLPs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    capacities: dict[str, tuple[float, ...]] = Field(default_factory=lambda: {
        "logreg": (0.01, 1.0), "tree": (2, 4, 8), "forest": (10, 50), "boosting": (20, 100),
        "knn": (15, 1), "mlp": (16, 64, 256),
    })
    seeds: tuple[int, ...] = Field(default=(0, 1, 2, 3, 4), min_length=1)
    fractions: tuple[float, ...] = Field(default=(0.25, 0.5, 1.0), min_length=1)
    mlp_optim: OptimParams = OptimParams(max_epochs=20, batch_size=64, lr=2e-3)

    @field_validator("capacities")
    @classmethod
    def _families(cls, v):
        for fam, caps in v.items():
            if fam not in FAMILIES:
                raise ValueError(f"unknown model family {fam!r}; choose from {list(FAMILIES)}")
            if not caps or any(c <= 0 for c in caps):
                raise ValueError(f"{fam}: capacities must be positive numbers, got {list(caps)}")
        return v

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v):
        if any(not (0 < f <= 1) for f in v):
            raise ValueError(f"fractions must lie in (0, 1], got {list(v)}")
        return v


def _sklearn_model(family: str, cap: float, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.tree import DecisionTreeClassifier

    if family == "logreg":
        return LogisticRegression(C=cap, max_iter=500)
    if family == "tree":
        return DecisionTreeClassifier(max_depth=int(cap), random_state=seed)
    if family == "forest":
        return RandomForestClassifier(n_estimators=int(cap), random_state=seed, n_jobs=1)
    if family == "boosting":
        return HistGradientBoostingClassifier(max_iter=int(cap), random_state=seed, early_stopping=False)
    if family == "knn":
        return KNeighborsClassifier(n_neighbors=int(cap))
    raise MultiplicityError(f"unknown model family {family!r}")


def subsample(train: pa.Table, fraction: float, seed: int) -> pa.Table:
    if fraction >= 1.0:
        return train
    from sklearn.model_selection import train_test_split

    y = train.column("label").to_numpy()
    idx, _ = train_test_split(np.arange(len(y)), train_size=fraction, stratify=y, random_state=seed)
    return train.take(pa.array(np.sort(idx)))


def _full_probs(p: np.ndarray, seen: np.ndarray, n_classes: int) -> np.ndarray:
    """sklearn probabilities over the classes it saw -> (n, n_classes)."""
    out = np.zeros((p.shape[0], n_classes))
    out[:, seen] = p
    return out


def _fit_one(family: str, cap: float, seed: int, train: pa.Table, val: pa.Table, n_classes: int,
             xs: dict[str, np.ndarray], optim: OptimParams) -> dict[str, np.ndarray]:
    """Train one zoo member; return its probabilities on each zoo split."""
    if family == "mlp":
        spec = ModelSpec(hidden=(int(cap), int(cap)))
        model = init_model(spec, train, n_classes, seed)
        fit(model, optim, train, val, seed)
        model.eval()
        with torch.no_grad():
            return {s: model(torch.from_numpy(x)).softmax(-1).double().numpy() for s, x in xs.items()}
    x, y, _ = table_to_tensors(train)
    m = _sklearn_model(family, cap, seed).fit(x.numpy(), y.numpy())
    return {s: _full_probs(m.predict_proba(x_), m.classes_, n_classes) for s, x_ in xs.items()}


# PAPER: the zoo ----------------------------------------------------------------------------
def build_zoo(params: ZooParams, *, train: pa.Table, val: pa.Table, test: pa.Table) -> dict[str, object]:
    """Train every (family, capacity, seed, fraction) and record its per-item probabilities.

    Returns:
        ``probs``: one row per (model, split, item): ``model``, ``split`` ("val" = the
        reference split, "test"), ``id``, ``label``, ``probs`` (list<float32>[C]);
        ``models``: one row per model: ``model``, ``family``, ``capacity``, ``seed``,
        ``fraction``, ``val_acc``, ``val_loss``, ``test_acc``, ``fit_seconds``;
        ``metrics``: counts.
    """
    n_classes = num_classes(train, val, test)
    tables = {"val": val, "test": test}
    xs = {s: table_to_tensors(t)[0].numpy() for s, t in tables.items()}
    ys = {s: t.column("label").to_numpy() for s, t in tables.items()}
    ids = {s: t.column("id").to_numpy() for s, t in tables.items()}
    prob_cols: dict[str, list] = {k: [] for k in ("model", "split", "id", "label", "probs")}
    rows = []
    for family, caps in params.capacities.items():
        for cap in caps:
            for frac in params.fractions:
                for seed in params.seeds:
                    name = f"{family}-{cap:g}-f{frac:g}-s{seed}"
                    sub = subsample(train, frac, seed)
                    t0 = time.perf_counter()
                    probs = _fit_one(family, cap, seed, sub, val, n_classes, xs, params.mlp_optim)
                    secs = time.perf_counter() - t0
                    for s in ZOO_SPLITS:
                        p = probs[s].astype(np.float32)
                        prob_cols["model"] += [name] * len(p)
                        prob_cols["split"] += [s] * len(p)
                        prob_cols["id"].append(ids[s])
                        prob_cols["label"].append(ys[s])
                        prob_cols["probs"].append(p)
                    pv = np.clip(probs["val"][np.arange(len(ys["val"])), ys["val"]], 1e-12, 1.0)
                    rows.append({
                        "model": name, "family": family, "capacity": float(cap), "seed": seed, "fraction": float(frac),
                        "val_acc": float((probs["val"].argmax(1) == ys["val"]).mean()),
                        "val_loss": float(-np.log(pv).mean()),
                        "test_acc": float((probs["test"].argmax(1) == ys["test"]).mean()),
                        "fit_seconds": secs,
                    })
    flat = np.concatenate(prob_cols["probs"]).reshape(-1)
    table = pa.Table.from_arrays(
        [pa.array(prob_cols["model"]), pa.array(prob_cols["split"]),
         pa.array(np.concatenate(prob_cols["id"]).astype(np.int64)),
         pa.array(np.concatenate(prob_cols["label"]).astype(np.int64)),
         pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), n_classes)],
        names=["model", "split", "id", "label", "probs"],
    )
    return {"probs": table, "models": pa.Table.from_pylist(rows),
            "metrics": {"n_models": len(rows), "n_classes": n_classes}}


# PLATFORM: reading the zoo back ------------------------------------------------------------
def check_probs_table(table: pa.Table, where: str) -> None:
    """Schema check of a zoo ``probs`` table (any number of classes)."""
    want = ["model", "split", "id", "label", "probs"]
    if table.column_names != want:
        raise ArtifactError(f"schema mismatch in {where}: columns {table.column_names}, expected {want}")
    t = table.schema.field("probs").type
    if not (isinstance(t, pa.FixedSizeListType) and t.value_type == pa.float32()):
        raise ArtifactError(f"schema mismatch in {where}: column 'probs' must be fixed_size_list<float32>, got {t}")


def score_tensor(table: pa.Table, split: str, models: list[str] | None = None) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(model names, ids (n,), labels (n,), scores (m, n, c)) of one split of a zoo table.

    Every model must cover the same items in the same order (else
    :class:`MultiplicityError`: a ragged zoo); rows must be probability vectors.
    """
    if split not in ZOO_SPLITS:
        raise MultiplicityError(f"unknown zoo split {split!r}; choose from {list(ZOO_SPLITS)}")
    import pyarrow.compute as pc

    t = table.filter(pc.equal(table.column("split"), split))
    names = list(dict.fromkeys(t.column("model").to_pylist())) if models is None else list(models)
    if not names:
        raise MultiplicityError(f"the zoo has no models on split {split!r}")
    c = t.schema.field("probs").type.list_size
    model_col = t.column("model").to_numpy(zero_copy_only=False)
    ids_all = t.column("id").to_numpy()
    probs_all = t.column("probs").combine_chunks().flatten().to_numpy().reshape(-1, c)
    per = []
    ref_ids = None
    for n in names:
        sel = model_col == n
        if not sel.any():
            raise MultiplicityError(f"model {n!r} is not in the zoo (split {split!r})")
        if ref_ids is None:
            ref_ids = ids_all[sel]
        elif not np.array_equal(ids_all[sel], ref_ids):
            raise MultiplicityError(f"ragged zoo: model {n!r} covers other items than {names[0]!r} on {split!r}")
        per.append(probs_all[sel])
    labels = t.column("label").to_numpy()[model_col == names[0]]
    return names, ref_ids, labels, check_scores(np.stack(per), f"zoo scores ({split})")
