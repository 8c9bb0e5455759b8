"""Rashomon-set samplers: candidate models around a trained base MLP.

Four ways to propose candidates (Hsu et al., "Dropout-Based Rashomon Set Exploration for
Efficient Predictive Multiplicity Estimation", ICLR 2024, Sec. 3-4; reference code
``jpmorganchase/dropout-rashomon-set-exploration`` @33779e8):

* ``retrain``: train the same architecture again with other seeds (the costly baseline).
* ``dropout_bernoulli``: at inference, multiply every ``nn.Linear`` output (the head
  included, as the reference does) by a Bernoulli(1 - p) mask scaled by 1/(1 - p).
* ``dropout_gaussian``: multiply every ``nn.Linear`` output by ``1 + p * N(0, 1)``.
* ``awp``: adversarial weight perturbation (Hsu & Calmon 2022): from the base weights,
  gradient ascent on ``log p_y(x_i)`` for a sample ``x_i`` and target class ``y``; every
  iterate is a candidate.

A candidate's membership of the epsilon-Rashomon set is decided on the *reference* split
(:func:`tasks.multiplicity.metrics.epsilon_set`): a sampler gets the reference features and
labels, and the test *features* only, so nothing here can look at a test label.

Assumption: the reference draws a fresh dropout mask for every input row, so one "model"
is a random function; we draw one mask per layer per candidate, shared by all inputs, so a
candidate is one fixed network (one weight perturbation) evaluated on every sample.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import torch
from torch import nn
from torch.nn import functional as F

from tasks.multiplicity.metrics import MultiplicityError

SAMPLERS = ("retrain", "dropout_bernoulli", "dropout_gaussian", "awp")
CHUNK = 32  # dropout candidates evaluated per vectorised forward pass


@dataclass(frozen=True)
class Candidates:
    """Candidate models proposed by one sampler.

    Attributes:
        method: one of :data:`SAMPLERS`.
        ref_loss: (k,) mean cross-entropy of each candidate on the reference split.
        test_probs: (k, n, c) float32 softmax outputs on the test features.
        seconds: (k,) wall time spent producing each candidate (its share of a batch).
        knob: (k,) the sampler's setting per candidate (dropout rate, AWP step, seed).
    """

    method: str
    ref_loss: np.ndarray
    test_probs: np.ndarray
    seconds: np.ndarray
    knob: np.ndarray

    def __len__(self) -> int:
        return int(self.ref_loss.shape[0])


def concat(method: str, parts: list[Candidates]) -> Candidates:
    return Candidates(
        method,
        np.concatenate([p.ref_loss for p in parts]),
        np.concatenate([p.test_probs for p in parts]),
        np.concatenate([p.seconds for p in parts]),
        np.concatenate([p.knob for p in parts]),
    )


# PAPER: dropout at inference ---------------------------------------------------------------
@contextlib.contextmanager
def masked_linears(model: nn.Module, masks: list[torch.Tensor]) -> Iterator[None]:
    """Multiply the output of the i-th ``nn.Linear`` of ``model`` by ``masks[i]`` (forward hooks).

    With inputs shaped (K, n, d) and masks (K, 1, h_i) this evaluates K perturbed networks
    in one pass. Hooks are removed on exit.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if len(linears) != len(masks):
        raise MultiplicityError(f"{len(masks)} masks for {len(linears)} linear layers")
    handles = [
        lin.register_forward_hook(lambda _m, _i, out, mask=mask: out * mask) for lin, mask in zip(linears, masks)
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def draw_masks(model: nn.Module, kind: str, p: float, k: int, g: torch.Generator) -> list[torch.Tensor]:
    """One multiplicative mask (k, 1, width) per ``nn.Linear`` output of ``model``."""
    out = []
    for lin in (m for m in model.modules() if isinstance(m, nn.Linear)):
        shape = (k, 1, lin.out_features)
        if kind == "dropout_bernoulli":
            keep = 1.0 - p
            out.append(torch.bernoulli(torch.full(shape, keep), generator=g) / keep)
        elif kind == "dropout_gaussian":
            out.append(1.0 + p * torch.randn(shape, generator=g))
        else:
            raise MultiplicityError(f"unknown dropout kind {kind!r}; choose dropout_bernoulli or dropout_gaussian")
    return out


@torch.no_grad()
def dropout_candidates(
    model: nn.Module,
    kind: str,
    rates: list[float],
    per_rate: int,
    x_ref: torch.Tensor,
    y_ref: torch.Tensor,
    x_test: torch.Tensor,
    seed: int,
) -> Candidates:
    """``per_rate`` dropout-perturbed copies of ``model`` at each rate in ``rates``.

    Deterministic per ``seed``. The timed work is what a user pays per candidate: drawing
    the masks and one forward pass over the reference and test features.
    """
    for p in rates:
        if not (0.0 <= p < 1.0):
            raise MultiplicityError(f"dropout rate must lie in [0, 1), got {p}")
    model.eval()
    g = torch.Generator().manual_seed(seed)
    x_all = torch.cat([x_ref, x_test])  # (n_ref + n_test, d)
    n_ref = len(x_ref)
    parts = []
    for p in rates:
        done = 0
        while done < per_rate:
            k = min(CHUNK, per_rate - done)
            t0 = time.perf_counter()
            masks = draw_masks(model, kind, p, k, g)
            with masked_linears(model, masks):
                logits = model(x_all.expand(k, *x_all.shape))  # (k, n_ref + n_test, c)
            ref_loss = F.cross_entropy(logits[:, :n_ref].transpose(1, 2), y_ref.expand(k, n_ref), reduction="none")
            ref_loss = ref_loss.mean(dim=1)
            probs = logits[:, n_ref:].softmax(-1)
            dt = time.perf_counter() - t0
            parts.append(
                Candidates(kind, ref_loss.double().numpy(), probs.float().numpy(), np.full(k, dt / k), np.full(k, p))
            )
            done += k
    return concat(kind, parts)


# PAPER: adversarial weight perturbation ----------------------------------------------------
def awp_candidates(
    model: nn.Module,
    x_ref: torch.Tensor,
    y_ref: torch.Tensor,
    x_test: torch.Tensor,
    points: int,
    steps: int,
    lr: float,
    max_loss: float,
    seed: int,
) -> Candidates:
    """Adversarial weight perturbation towards every class on ``points`` test inputs.

    For each chosen test input ``x_i`` (features only) and class ``y``: start from the base
    weights and take up to ``steps`` SGD steps (rate ``lr``) on ``-log p_y(x_i)``; every
    iterate is a candidate; a run stops early once its reference loss exceeds ``max_loss``
    (further iterates could only leave the largest epsilon set).

    Assumption: the reference searches each (sample, class, epsilon) separately by a
    constrained ascent; one trajectory per (sample, class) scored against every epsilon
    afterwards gives the same kind of candidates at a fraction of the cost.
    """
    if points < 1 or steps < 1 or lr <= 0:
        raise MultiplicityError(f"awp needs points >= 1, steps >= 1 and lr > 0, got {points}, {steps}, {lr}")
    model.eval()
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(x_test), size=min(points, len(x_test)), replace=False)
    x_all = torch.cat([x_ref, x_test])
    n_ref = len(x_ref)
    with torch.no_grad():
        n_classes = int(model(x_test[:1]).shape[-1])
    losses, probs, secs, knobs = [], [], [], []
    try:
        for i in chosen:
            for target in range(n_classes):
                model.load_state_dict(base)
                opt = torch.optim.SGD(model.parameters(), lr=lr)
                for step in range(steps):
                    t0 = time.perf_counter()
                    loss = -F.log_softmax(model(x_test[i : i + 1]), dim=-1)[0, target]
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    with torch.no_grad():
                        logits = model(x_all)
                        ref_loss = float(F.cross_entropy(logits[:n_ref], y_ref))
                        p = logits[n_ref:].softmax(-1).float().numpy()
                    secs.append(time.perf_counter() - t0)
                    losses.append(ref_loss)
                    probs.append(p)
                    knobs.append(step + 1)
                    if ref_loss > max_loss:
                        break
    finally:
        model.load_state_dict(base)
    return Candidates("awp", np.asarray(losses), np.stack(probs), np.asarray(secs), np.asarray(knobs, dtype=float))


# PAPER: retraining baseline ----------------------------------------------------------------
def retrain_candidates(
    spec,
    optim,
    train: pa.Table,
    ref: pa.Table,
    x_test: torch.Tensor,
    seeds: list[int],
) -> tuple[Candidates, list[nn.Module]]:
    """Train the architecture ``spec`` once per seed (the retraining baseline).

    Each candidate's seconds are its full training time. Returns the candidates and the
    trained models (the base models of other seeds are among them when ``seeds`` overlap).
    """
    from tasks.data_prep import table_to_tensors
    from tasks.train import fit, init_model, num_classes

    x_ref, y_ref, _ = table_to_tensors(ref)
    n_classes = num_classes(train, ref)
    losses, probs, secs, models = [], [], [], []
    for s in seeds:
        t0 = time.perf_counter()
        model = init_model(spec, train, n_classes, s)
        fit(model, optim, train, ref, s)
        secs.append(time.perf_counter() - t0)
        model.eval()
        with torch.no_grad():
            losses.append(float(F.cross_entropy(model(x_ref), y_ref)))
            probs.append(model(x_test).softmax(-1).float().numpy())
        models.append(model)
    cands = Candidates("retrain", np.asarray(losses), np.stack(probs), np.asarray(secs), np.asarray(seeds, dtype=float))
    return cands, models
