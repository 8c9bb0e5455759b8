"""The manual-optimisation fast path in LitClassifier equals Lightning's optimizer API path."""

import pytest
import torch

from models import ModelSpec
from models.lit import LitClassifier
from tasks.data_prep import DataParams, prepare
from tasks.train import OptimParams, fit, init_model


@pytest.fixture(scope="module")
def data():
    return prepare(DataParams(dataset="digits", max_samples=300, seed=1))


def run(data, monkeypatch=None, masks=False):
    model = init_model(ModelSpec(hidden=(16,)), data["train"], 10, 0)
    m = None
    if masks:
        w = model.features[0].weight
        m = {"features.0.weight": torch.arange(w.numel()).reshape(w.shape) % 2 == 0}
    history = fit(model, OptimParams(max_epochs=2, batch_size=32, lr=1e-2), data["train"], data["val"], 0, masks=m)
    return model.state_dict(), history


@pytest.mark.parametrize("masks", [False, True])
def test_fast_path_equals_lightning_optimizer_path(data, monkeypatch, masks):
    fast_sd, fast_h = run(data, masks=masks)
    monkeypatch.setattr(LitClassifier, "on_train_start", lambda self: None)  # forces the API path
    api_sd, api_h = run(data, masks=masks)
    for k in fast_sd:
        torch.testing.assert_close(fast_sd[k], api_sd[k], rtol=0, atol=0)
    assert fast_h == api_h
    assert fast_h[-1]["train_loss"] < fast_h[0]["train_loss"] * 1.5  # a real loss, finite
    if masks:
        w = fast_sd["features.0.weight"].reshape(-1)
        assert (w[1::2] == 0).all() and (w[0::2] != 0).all()
