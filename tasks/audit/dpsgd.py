"""DP-SGD training with Opacus, and the one-run and many-run canary audits of DP-SGD.

DP-SGD (Abadi et al. 2016, Alg. 1): Poisson-sampled batches (rate q), per-example
gradients clipped to L2 norm C, Gaussian noise N(0, sigma^2 C^2) added to their sum.
Opacus (``PrivacyEngine.make_private_with_epsilon``) picks sigma for a target epsilon at
delta after a number of epochs with its accountant, and reports the spent epsilon.

Canary audit (Steinke, Nasr, Jagielski 2023, Sec. 6): m canaries are held-out examples
with a wrong label ("mislabelled" canaries, the strongest natural ones in Privacy Meter's
DP-audit table); each is inserted into the training set independently with probability
1/2, the model is trained **once**, and the auditor scores every canary by the model's
log-probability of its (wrong) label. :func:`tasks.audit.dp.eps_one_run` turns
scores + inclusion bits into an epsilon lower bound, to compare with the accountant.

Many-run canary audit (Jagielski, Ullman, Oprea 2020, "How Private is Private SGD?";
Nasr et al. 2021, "Adversary Instantiation", the black-box final-model threat model): ONE
mislabelled canary c; R models train on D ("out") and R on D + {c} ("in") with the same
mechanism (same noise multiplier, sample rate, steps) and independent seeds; each model
scores c by the log-probability of its wrong label. The 2R scores are i.i.d. draws from
M(D) and M(D + c), which :func:`tasks.audit.dp.eps_many_run` turns into epsilon
lower bounds (Clopper-Pearson and the GDP route).

Assumption: one canary rather than k poisons (no group-privacy division by k), chosen in
advance (the first draw of :func:`make_canaries` from the held-out pool) so the audit does
not pick a canary after seeing scores.

Assumption: Opacus needs its own optimizer wrapper and Poisson data loader, so this is a
plain PyTorch loop rather than the Lightning ``fit`` of ``tasks/train.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from models import ModelSpec, build_model
from tasks.audit import dp as dp_audit
from tasks.audit.mia import auc, true_label_logprob
from tasks.data_prep import make_table, num_features, table_to_tensors
from tasks.platform.params import Epochs, Seed
from tasks.train import accuracy_and_loss


class DPSGDParams(BaseModel):
    """DP-SGD settings.

    Attributes:
        target_eps: epsilon the accountant calibrates the noise to; ``None`` = no DP
            (plain SGD with the same loop, the non-private baseline).
        delta: delta of the guarantee.
        epochs: passes over the data (in expectation, with Poisson sampling).
        batch_size: expected batch size (sample rate = batch_size / n).
        lr: SGD learning rate.
        max_grad_norm: per-example clipping norm C.
        accountant: Opacus accountant (``rdp`` or ``prv``).
        model: architecture.
        seed: seed of init, sampling and noise.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_eps: float | None = Field(default=4.0, gt=0.0)
    delta: float = Field(default=1e-5, gt=0.0, lt=1.0)
    epochs: Epochs = 20
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=0.5, gt=0.0)
    max_grad_norm: float = Field(default=1.0, gt=0.0)
    accountant: str = Field(default="rdp", pattern="^(rdp|prv)$")
    model: ModelSpec = ModelSpec(hidden=(64,))
    seed: Seed = 0


def dpsgd_train(
    params: DPSGDParams, train: pa.Table, n_classes: int, noise_multiplier: float | None = None
) -> tuple[nn.Module, dict]:
    """Train a classifier with DP-SGD (or plain SGD when ``target_eps`` is None).

    Args:
        noise_multiplier: use this sigma instead of calibrating one to ``target_eps``
            (``make_private`` instead of ``make_private_with_epsilon``); the many-run audit
            passes the first model's sigma so every model runs the same mechanism (and the
            accountant's search runs once). Ignored when ``target_eps`` is None.

    Returns:
        (model, info) with info = ``noise_multiplier``, ``eps_spent`` (accountant),
        ``sample_rate``, ``steps``.
    """
    from opacus import PrivacyEngine

    torch.manual_seed(params.seed)
    x, y, _ = table_to_tensors(train)
    model = build_model(params.model, num_features(train), n_classes)
    opt = torch.optim.SGD(model.parameters(), lr=params.lr)
    g = torch.Generator().manual_seed(params.seed)
    loader = DataLoader(TensorDataset(x, y), batch_size=params.batch_size, shuffle=True, generator=g)
    info = {"noise_multiplier": 0.0, "eps_spent": float("inf"), "sample_rate": params.batch_size / len(y)}
    if params.target_eps is not None:
        engine = PrivacyEngine(accountant=params.accountant)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
            warnings.filterwarnings("ignore", message=".*full_backward_hook.*")
            common = dict(
                module=model, optimizer=opt, data_loader=loader, max_grad_norm=params.max_grad_norm,
                noise_generator=torch.Generator().manual_seed(params.seed + 1),
            )
            if noise_multiplier is None:
                model, opt, loader = engine.make_private_with_epsilon(
                    target_epsilon=params.target_eps, target_delta=params.delta, epochs=params.epochs, **common
                )
            else:
                model, opt, loader = engine.make_private(noise_multiplier=noise_multiplier, **common)
    steps = 0
    model.train()
    for _ in range(params.epochs):
        for xb, yb in loader:
            if len(yb) == 0:  # NOTE: Poisson sampling can draw an empty batch
                continue
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
            steps += 1
    model.eval()
    if params.target_eps is not None:
        info["noise_multiplier"] = float(opt.noise_multiplier)
        info["eps_spent"] = float(engine.get_epsilon(params.delta))
        info["sample_rate"] = float(1 / len(loader))
        # cross-check: our wrapper of the same accountant on the same history
        info["eps_recomputed"] = dp_audit.accountant_epsilon(
            info["noise_multiplier"], info["sample_rate"], steps, params.delta, params.accountant
        )
        model = model._module  # unwrap GradSampleModule
    info["steps"] = steps
    return model, info


def make_canaries(pool: pa.Table, m: int, n_classes: int, seed: int) -> tuple[pa.Table, np.ndarray]:
    """m mislabelled canaries from ``pool`` (label shifted by 1..C-1) + inclusion bits (m,)."""
    if m > pool.num_rows:
        raise ValueError(f"m = {m} canaries but the canary pool has only {pool.num_rows} rows")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(pool.num_rows, m, replace=False))
    x, y, ids = table_to_tensors(pool.take(idx))
    wrong = (y.numpy() + rng.integers(1, n_classes, m)) % n_classes
    included = rng.random(m) < 0.5
    return make_table(ids.numpy(), x.numpy(), wrong), included


def canary_audit(
    params: DPSGDParams, train: pa.Table, canary_pool: pa.Table, m: int, n_classes: int, test: pa.Table | None = None
) -> dict:
    """Insert canaries w.p. 1/2, train once with DP-SGD, return the one-run audit.

    Returns:
        dict with accountant epsilon (``eps_spent``), the one-run lower bound ``eps_lb``
        (and its guesses), the canary AUC, training info, and ``test_acc`` when ``test``
        is given.
    """

    canaries, included = make_canaries(canary_pool, m, n_classes, params.seed)
    train_plus = pa.concat_tables([train, canaries.filter(pa.array(included))])
    model, info = dpsgd_train(params, train_plus, n_classes)
    scores = canary_logprob(model, canaries)
    one_run = dp_audit.eps_one_run(scores, included, params.delta)
    out = {**info, **one_run, "canary_auc": auc(scores, included), "target_eps": params.target_eps}
    if test is not None:
        out["test_acc"] = accuracy_and_loss(model, test)["acc"]
    return out


def canary_logprob(model: nn.Module, canary: pa.Table) -> np.ndarray:
    """Audit score of each canary row: log p(canary label | x) under ``model``, shape (m,)."""
    x, y, _ = table_to_tensors(canary)
    with torch.no_grad():
        return true_label_logprob(model(x).double().numpy(), y.numpy())


def many_run_scores(
    params: DPSGDParams, train: pa.Table, canary: pa.Table, n_models: int, n_classes: int, test: pa.Table | None = None
) -> dict:
    """Train ``n_models`` models on D = ``train`` and ``n_models`` on D + ``canary``; score the canary.

    # PAPER: the many-run (Jagielski et al. 2020) design. Model i of the "out" arm uses
    # seed ``params.seed + 4 i``, of the "in" arm ``params.seed + 4 i + 2`` (``dpsgd_train``
    # also uses seed + 1 for the noise), so all 2R runs have independent randomness.
    # Every DP model uses the noise multiplier Opacus calibrated for the first one, and
    # both arms must have the same sample rate (Poisson rate 1 / ceil(n / batch_size)):
    # the two arms then run the same mechanism on neighbouring datasets (add/remove).

    Args:
        canary: a one-row split table (the mislabelled canary).
        n_models: R, models per arm.
        test: when given, the mean test accuracy of the "out" models is returned.

    Returns:
        dict with ``in_scores``, ``out_scores`` (float64 (R,)), ``eps_spent`` (accountant,
        inf without DP), ``noise_multiplier``, ``sample_rate``, ``steps`` (of the first
        model), ``test_acc`` (or nan), ``secs_per_model``.
    """
    import time

    if canary.num_rows != 1:
        raise ValueError(f"the many-run audit takes one canary row, got {canary.num_rows}")
    if n_models < 1:
        raise ValueError(f"n_models must be >= 1, got {n_models}")
    train_in = pa.concat_tables([train, canary])
    if params.target_eps is not None:
        bs = params.batch_size
        if -(-train.num_rows // bs) != -(-train_in.num_rows // bs):
            raise ValueError(
                f"the in arm ({train_in.num_rows} rows) and out arm ({train.num_rows} rows) get different Poisson "
                f"sample rates with batch_size = {bs}; change batch_size or the number of training rows"
            )
    scores: dict[str, list[float]] = {"out": [], "in": []}
    sigma, first, accs = None, None, []
    t0 = time.perf_counter()
    for i in range(n_models):
        for arm, offset, table in (("out", 0, train), ("in", 2, train_in)):
            p = params.model_copy(update={"seed": params.seed + 4 * i + offset})
            model, info = dpsgd_train(p, table, n_classes, noise_multiplier=sigma)
            if first is None:
                first = info
                sigma = info["noise_multiplier"] if params.target_eps is not None else None
            scores[arm].append(float(canary_logprob(model, canary)[0]))
            if test is not None and arm == "out":
                accs.append(accuracy_and_loss(model, test)["acc"])
    return {
        "in_scores": np.asarray(scores["in"]), "out_scores": np.asarray(scores["out"]),
        "eps_spent": first["eps_spent"], "noise_multiplier": first["noise_multiplier"],
        "sample_rate": first["sample_rate"], "steps": first["steps"],
        "test_acc": float(np.mean(accs)) if accs else float("nan"),
        "secs_per_model": (time.perf_counter() - t0) / (2 * n_models),
    }
