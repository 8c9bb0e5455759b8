"""Calibration audit: same numbers as torchmetrics / sklearn on the same model outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss
from torchmetrics.functional.classification import multiclass_calibration_error

from models import ModelSpec
from tasks.audit import shadows as audit
from tasks.data_prep import DataParams, prepare
from tasks.train import OptimParams, fit, init_model, predict_logits, torch_threads


def test_calibration_audit_matches_torchmetrics() -> None:
    d = prepare(DataParams(dataset="digits", max_samples=400))
    model = init_model(ModelSpec(hidden=(32,)), d["train"], 10, 0)
    with torch_threads(1):
        fit(model, OptimParams(max_epochs=5, lr=3e-3), d["train"], d["val"], 0)
    out = audit.calibration_audit(model, d["test"], n_bins=15, n_boot=50)
    m = out["metrics"]
    logits, y, _ = predict_logits(model, d["test"])
    probs = torch.softmax(logits.double(), -1)
    tm = float(multiclass_calibration_error(probs, y, num_classes=10, n_bins=15, norm="l1"))
    assert m["ece"] == pytest.approx(tm, abs=1e-6)
    assert m["nll"] == pytest.approx(log_loss(y.numpy(), probs.numpy(), labels=list(range(10))), rel=1e-6)
    onehot = np.eye(10)[y.numpy()]
    assert m["brier"] == pytest.approx(float(((probs.numpy() - onehot) ** 2).sum(1).mean()), rel=1e-9)
    for k in audit.CALIBRATION_METRICS + ("acc",):
        assert m[f"{k}_lo"] <= m[k] <= m[f"{k}_hi"] or np.isclose(m[f"{k}_lo"], m[k])
    assert out["reliability"].axes
