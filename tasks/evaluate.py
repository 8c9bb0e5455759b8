"""Evaluation of trained classifiers: metrics per model plus item-level predictions.

Item-level predictions (one row per model x test item) are what item response theory,
negative-flip counts and run-to-run comparisons are computed from.

Tables:
    predictions: ``model`` (string, e.g. ``"finetuned/2:4_v1"``), ``seed`` (int64), ``id`` (int64,
    test item id), ``label`` (int64), ``pred`` (int64), ``correct`` (bool), ``p_true`` (float64,
    probability given to the true class).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from torch import nn
from torch.nn import functional as F

from tasks.train import predict_logits

PREDICTIONS_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("seed", pa.int64()),
        ("id", pa.int64()),
        ("label", pa.int64()),
        ("pred", pa.int64()),
        ("correct", pa.bool_()),
        ("p_true", pa.float64()),
    ]
)


def evaluate_classifier(model: nn.Module, test: pa.Table, name: str, seed: int) -> tuple[dict[str, float], pa.Table]:
    """Accuracy, cross-entropy, and the item-level predictions of ``model`` on ``test``."""
    logits, y, ids = predict_logits(model, test)
    probs = torch.softmax(logits, -1)
    pred = logits.argmax(-1)
    metrics = {"acc": float((pred == y).float().mean()), "loss": float(F.cross_entropy(logits, y))}
    n = len(y)
    table = pa.Table.from_arrays(
        [
            pa.array([name] * n, pa.string()),
            pa.array(np.full(n, seed, dtype=np.int64)),
            pa.array(ids.numpy()),
            pa.array(y.numpy()),
            pa.array(pred.numpy().astype(np.int64)),
            pa.array((pred == y).numpy()),
            pa.array(probs.gather(1, y[:, None])[:, 0].double().numpy()),
        ],
        schema=PREDICTIONS_SCHEMA,
    )
    return metrics, table


def count_params(sd: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(total, non-zero) parameter counts of a state_dict."""
    total = sum(t.numel() for t in sd.values())
    nonzero = sum(int((t != 0).sum()) for t in sd.values())
    return total, nonzero
