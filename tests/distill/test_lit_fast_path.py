"""The manual-optimisation fast path in LitClassifier equals Lightning's optimizer API path,
and ``fit`` equals a plain torch loop (cleanrl's fast-vs-loop parity test)."""

import pytest
import torch

from models import ModelSpec
from models.lit import LitClassifier
from tasks.data_prep import DataParams, prepare
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from tasks.data_prep import table_to_tensors
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


def plain_fit(model, optim, train, val, seed):
    """``fit`` written as a bare loop: same data order, Adam, per-epoch validation, and the
    same float32 arithmetic for the epoch means (0 + sum of mean * batch size, / total)."""
    xt, yt, _ = table_to_tensors(train)
    xv, yv, _ = table_to_tensors(val)
    loader = DataLoader(TensorDataset(xt, yt), batch_size=optim.batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.Adam(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
    history = []
    for epoch in range(optim.max_epochs):
        model.train()
        loss_sum, n = torch.zeros(()), 0
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum, n = loss_sum + loss.detach() * len(y), n + len(y)
        model.eval()
        with torch.no_grad():
            logits = model(xv)
        n_val = torch.tensor(0) + len(yv)
        history.append(
            {
                "epoch": float(epoch),
                "train_loss": float(loss_sum / n),
                "val_loss": float((torch.zeros(()) + F.cross_entropy(logits, yv) * len(yv)) / n_val),
                "val_acc": float((torch.zeros(()) + (logits.argmax(-1) == yv).float().mean() * len(yv)) / n_val),
            }
        )
    return history


def test_fit_equals_plain_torch_loop(data):
    """One optimiser step per batch in the loader's order, validation after every epoch:
    weights and history bit-identical to the bare loop (guards the ``dataloader_iter`` step)."""
    optim = OptimParams(max_epochs=3, batch_size=32, lr=1e-2)
    model = init_model(ModelSpec(hidden=(16,)), data["train"], 10, 0)
    history = fit(model, optim, data["train"], data["val"], 0)
    ref = init_model(ModelSpec(hidden=(16,)), data["train"], 10, 0)
    ref_history = plain_fit(ref, optim, data["train"], data["val"], 0)
    assert history == ref_history
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0)
