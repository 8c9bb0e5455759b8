"""Auditing stage: membership inference against classifiers trained by the shared ``fit``.

The design is LiRA's (Carlini et al. 2022, Sec. VI): ``1 + R`` models train on random
halves of one candidate pool, each candidate IN for exactly half of them
(:func:`tasks.audit.mia.balanced_membership`). Model 0 is the target; models 1..R are
the shadow/reference models. A disjoint population split (never trained on) serves RMIA's
z points. Membership of every model is an index table (``id``, one bool column per model)
so it can be versioned as a file.

Core functions are pure (tables and tensors in, tables and dicts out) and usable in any
paper's pipeline: :func:`audit_models` attacks already-trained models, e.g. the dense,
pruned and distilled models of ``nm_sparsity``, given their member/non-member tables.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from models import ModelSpec
from tasks.audit import mia
from tasks.data_prep import table_to_tensors
from tasks.evaluation import calibration as scoring
from tasks.platform.progress import progress
from tasks.train import OptimParams, fit, init_model, num_classes, predict_logits

# Attacks that need shadow/reference models; the rest only look at the target.
REFERENCE_ATTACKS = ("reference_loss", "lira_online", "lira_offline", "rmia")


# ---------------------------------------------------------------------------------------
# PLATFORM: membership index tables
# ---------------------------------------------------------------------------------------


def membership_table(ids: np.ndarray, keep: np.ndarray) -> pa.Table:
    """Index table: ``id`` (int64) + ``m0..m{K-1}`` (bool), keep bool (K, n)."""
    cols = {"id": pa.array(np.asarray(ids, dtype=np.int64))}
    cols.update({f"m{k}": pa.array(keep[k]) for k in range(keep.shape[0])})
    return pa.table(cols)


def membership_from_table(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`membership_table`: (ids (n,), keep bool (K, n))."""
    names = table.schema.names
    if not names or names[0] != "id" or any(not n.startswith("m") for n in names[1:]):
        raise ValueError(f"not a membership table: columns {names}")
    keep = np.stack([table.column(n).to_numpy(zero_copy_only=False).astype(bool) for n in names[1:]])
    return table.column("id").to_numpy(), keep


def split_membership(pool: pa.Table, n_models: int, seed: int) -> pa.Table:
    """Draw the balanced membership of ``n_models`` models over the candidate pool."""
    return membership_table(
        pool.column("id").to_numpy(), mia.balanced_membership(n_models, pool.num_rows, seed)
    )


# ---------------------------------------------------------------------------------------
# PLATFORM: training and signals
# ---------------------------------------------------------------------------------------


def train_models(
    pool: pa.Table, membership: pa.Table, val: pa.Table, spec: ModelSpec, optim: OptimParams, seed: int
) -> tuple[list[nn.Module], list[float]]:
    """Train model k on the pool rows with ``m{k}`` set, with the shared ``fit``.

    Returns the models and each one's training wall time (s).
    """
    ids, keep = membership_from_table(membership)
    if not np.array_equal(ids, pool.column("id").to_numpy()):
        raise ValueError("membership table ids do not match the pool's ids (same order)")
    n_cls = num_classes(pool, val)
    models, times = [], []
    for k in range(keep.shape[0]):
        progress("model", k + 1, keep.shape[0], role="target" if k == 0 else "shadow")
        t0 = time.perf_counter()
        train_k = pool.filter(pa.array(keep[k]))
        model = init_model(spec, pool, n_cls, seed + k)
        fit(model, optim, train_k, val, seed + k)
        models.append(model)
        times.append(time.perf_counter() - t0)
    return models, times


def logits_of(models: list[nn.Module], table: pa.Table) -> np.ndarray:
    """Logits of every model on a split table, float64 (K, n, C)."""
    return np.stack([predict_logits(m, table)[0].double().numpy() for m in models])


def attack_inputs(
    target: nn.Module,
    candidates: pa.Table,
    refs: list[nn.Module] | None = None,
    ref_in: np.ndarray | None = None,
    population: pa.Table | None = None,
    with_grad_norms: bool = True,
) -> mia.AttackInputs:
    """Signals of the target (and reference models) on the candidates and population."""
    x, y, _ = table_to_tensors(candidates)
    fields = {"logits": logits_of([target], candidates)[0], "labels": y.numpy()}
    if with_grad_norms:
        fields["grad_norms"] = mia.gradient_norms(target, x, y)
    if refs:
        fields["ref_logits"] = logits_of(refs, candidates)
        if ref_in is not None:
            fields["ref_in"] = ref_in
    if population is not None:
        fields["pop_logits"] = logits_of([target], population)[0]
        fields["pop_labels"] = table_to_tensors(population)[1].numpy()
        if refs:
            fields["ref_pop_logits"] = logits_of(refs, population)
    return mia.AttackInputs(**fields)


# ---------------------------------------------------------------------------------------
# PLATFORM: the audit cores
# ---------------------------------------------------------------------------------------


def score_attacks(inputs: mia.AttackInputs, attacks, fix_variance: bool = False) -> dict[str, np.ndarray]:
    """Scores (n,) of each attack; LiRA variants get ``fix_variance``; timing in ``_secs``."""
    out = {}
    for name in attacks:
        opts = {"fix_variance": fix_variance} if name.startswith("lira") else {}
        out[name] = mia.run_attack(name, inputs, **opts)
    return out


def metrics_table(scores: dict[str, np.ndarray], is_member: np.ndarray, fprs, n_boot: int, seed: int) -> pa.Table:
    """One row per attack: auc, auc_lo, auc_hi, bal_acc, tpr_at_<x>_fpr, counts."""
    rows = [
        {"attack": name, **mia.attack_metrics(s, is_member, fprs=fprs, n_boot=n_boot, seed=seed)}
        for name, s in scores.items()
    ]
    return pa.Table.from_pylist(rows)


def audit_models(
    target: nn.Module,
    members: pa.Table,
    nonmembers: pa.Table,
    attacks=("loss", "entropy", "modified_entropy", "grad_norm"),
    fprs=(0.001, 0.01),
    n_boot: int = 500,
    seed: int = 0,
) -> dict[str, object]:
    """Reference-free audit of any trained classifier from its member/non-member tables.

    For pipelines that did not train shadows (e.g. ``nm_sparsity``'s dense, pruned and
    distilled models: members = their training split, non-members = the test split).

    Returns:
        ``metrics`` (pa.Table, one row per attack) and ``scores`` ({attack: (n,)}).
    """
    bad = [a for a in attacks if a in REFERENCE_ATTACKS]
    if bad:
        raise ValueError(f"attacks {bad} need reference models; use mia_audit")
    cand = pa.concat_tables([members, nonmembers])
    is_member = np.r_[np.ones(members.num_rows, bool), np.zeros(nonmembers.num_rows, bool)]
    inputs = attack_inputs(target, cand, with_grad_norms="grad_norm" in attacks)
    scores = score_attacks(inputs, attacks)
    return {"metrics": metrics_table(scores, is_member, fprs, n_boot, seed), "scores": scores}


# ---------------------------------------------------------------------------------------
# PLATFORM: calibration audit (metrics from tasks/evaluation/calibration.py, the one implementation)
# ---------------------------------------------------------------------------------------

CALIBRATION_METRICS = ("ece", "ece_mass", "classwise_ece", "brier", "nll")


def _calibration_values(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> dict[str, float]:

    return {
        "ece": scoring.ece(probs, labels, n_bins, binning="width"),
        "ece_mass": scoring.ece(probs, labels, n_bins, binning="mass"),
        "classwise_ece": scoring.classwise_ece(probs, labels, n_bins),
        "brier": scoring.brier(probs, labels),
        "nll": scoring.log_loss(probs, labels),
    }


def calibration_audit(
    model: nn.Module, table: pa.Table, n_bins: int = 15, n_boot: int = 500, seed: int = 0, figure: bool = True
) -> dict[str, object]:
    """Calibration of a classifier on a split: ECE (equal-width, equal-mass), classwise ECE,
    Brier, NLL, accuracy, each with a bootstrap percentile 95 % CI over examples, and the
    reliability diagram.

    Returns:
        ``metrics`` ({name: value, name_lo, name_hi}) and ``reliability`` (Figure; ``None``
        with ``figure=False``, which saves ~0.1 s per call when auditing many models).
    """

    logits, y, _ = predict_logits(model, table)
    probs = torch.softmax(logits.double(), -1).numpy()
    labels = y.numpy()
    point = _calibration_values(probs, labels, n_bins)
    point["acc"] = float(np.mean(probs.argmax(1) == labels))
    rng = np.random.default_rng(seed)
    reps = {k: [] for k in point}
    for _ in range(n_boot):
        i = rng.integers(0, labels.size, labels.size)
        vals = _calibration_values(probs[i], labels[i], n_bins)
        vals["acc"] = float(np.mean(probs[i].argmax(1) == labels[i]))
        for k, v in vals.items():
            reps[k].append(v)
    metrics = {}
    for k, v in point.items():
        lo, hi = np.quantile(reps[k], [0.025, 0.975])
        metrics.update({k: v, f"{k}_lo": float(lo), f"{k}_hi": float(hi)})
    fig = scoring.reliability_diagram(probs, labels, n_bins) if figure else None
    return {"metrics": metrics, "reliability": fig}


# ---------------------------------------------------------------------------------------
# PLATFORM: stage cores (func(params, **inputs) -> {output: object}, see docs/contract.md)
# ---------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------
# PLATFORM: DP auditing stage cores
# ---------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------
# PLATFORM: auditing compressed models (composes nm_sparsity's prune + finetune cores)
# ---------------------------------------------------------------------------------------
