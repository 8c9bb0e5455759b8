"""PSN-IRT: a pseudo-siamese network for 4PL item response theory (Zhou et al. 2025, "Lost in
Benchmarks? Rethinking Large Language Model Benchmarking with Item Response Theory", arXiv
2505.15055; seed 003 #22; round2_candidates.md §3.5).

Two branches share nothing but the link function (hence "pseudo-siamese"):

* ability branch: model id -> embedding -> MLP -> theta_m (one number per model);
* item branch:    item id  -> embedding -> MLP -> (a_i, b_i, c_i, d_i);
* 4PL link: ``P(correct) = c + (d - c) * sigmoid(a (theta - b))``,
  with ``a = softplus(.)`` (discrimination > 0), ``b`` free (difficulty),
  ``c = c_max * sigmoid(.)`` (guessing), ``d = c + (1 - c) * sigmoid(.)`` (feasibility, d > c).

Trained with binary cross-entropy on the observed cells of a (models x items) 0/1 response
matrix (full batch, Adam).

Assumption: branch inputs are learned one-hot embeddings (the abstract does not say what the
branches read); ``c_max = 0.5``; abilities are standardised after fitting (the 4PL is only
identified up to an affine map of theta, b and a).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F

from tasks.platform.errors import ReprolabError


class IRTInputError(ReprolabError):
    """A response matrix or mask that IRT cannot fit."""


class PSNParams(BaseModel):
    """PSN-IRT fit settings.

    Attributes:
        dim: embedding width of both branches. hidden: MLP width.
        epochs: full-batch Adam steps. lr: Adam step size. weight_decay: L2 on all weights.
        c_max: upper bound of the guessing parameter c.
        prior_sd: sd of the Gaussian priors on the item branch's raw outputs around the
            2PL-like start (log-ish a, b, logit c, logit d); the 4PL is weakly identified
            without them (py-irt's 4PL puts priors on every item parameter too).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dim: int = Field(default=16, ge=1)
    hidden: int = Field(default=32, ge=1)
    epochs: int = Field(default=500, ge=1)
    lr: float = Field(default=0.05, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    c_max: float = Field(default=0.5, gt=0.0, le=1.0)
    prior_sd: float = Field(default=0.5, gt=0.0)


@dataclass(frozen=True)
class FourPL:
    """Parameters of a 4PL model: theta (M,), a, b, c, d (I,)."""

    theta: np.ndarray
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    d: np.ndarray

    def prob(self) -> np.ndarray:
        """(M, I) probability of a correct response."""
        z = self.a[None] * (self.theta[:, None] - self.b[None])
        return self.c[None] + (self.d - self.c)[None] / (1.0 + np.exp(-z))

    def information(self, theta: np.ndarray) -> np.ndarray:
        """(len(theta), I) Fisher information of each item at each ability:
        ``a^2 (P - c)^2 (d - P)^2 / ((d - c)^2 P (1 - P))``."""
        z = self.a[None] * (theta[:, None] - self.b[None])
        p = self.c[None] + (self.d - self.c)[None] / (1.0 + np.exp(-z))
        p = np.clip(p, 1e-9, 1 - 1e-9)
        return (self.a**2)[None] * (p - self.c) ** 2 * (self.d - p) ** 2 / ((self.d - self.c) ** 2 * p * (1 - p))


def simulate_4pl(n_models: int, n_items: int, seed: int) -> tuple[FourPL, np.ndarray]:
    """Known 4PL parameters and a sampled (models x items) 0/1 response matrix.

    theta ~ N(0, 1); a ~ LogNormal(0, 0.3); b ~ N(0, 1); c ~ U(0, 0.25); d ~ U(0.8, 1).
    """
    rng = np.random.default_rng(seed)
    truth = FourPL(
        theta=rng.normal(size=n_models), a=rng.lognormal(0.0, 0.3, n_items), b=rng.normal(size=n_items),
        c=rng.uniform(0.0, 0.25, n_items), d=rng.uniform(0.8, 1.0, n_items),
    )
    return truth, (rng.random((n_models, n_items)) < truth.prob()).astype(np.int8)


def check_responses(responses: object, mask: object | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate a 0/1 (models x items) matrix and its observed-cell mask."""
    try:
        y = np.asarray(responses, dtype=np.float64)
    except ValueError as e:
        raise IRTInputError(f"responses are ragged or not numeric: {e}") from None
    if y.ndim != 2 or min(y.shape) < 2:
        raise IRTInputError(f"responses must be a (models >= 2, items >= 2) matrix, got shape {y.shape}")
    if not np.all((y == 0) | (y == 1)):
        raise IRTInputError("responses must be 0/1")
    m = np.ones_like(y, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != y.shape:
        raise IRTInputError(f"mask has shape {m.shape}, responses {y.shape}")
    if not m.any():
        raise IRTInputError("mask observes no cell")
    return y, m


class PSNIRT(nn.Module):
    """The two branches and the 4PL link (see the module docstring)."""

    def __init__(self, n_models: int, n_items: int, p: PSNParams):
        super().__init__()
        self.c_max = p.c_max
        self.model_emb = nn.Embedding(n_models, p.dim)
        self.item_emb = nn.Embedding(n_items, p.dim)
        self.ability = nn.Sequential(nn.Linear(p.dim, p.hidden), nn.ReLU(), nn.Linear(p.hidden, 1))
        self.item = nn.Sequential(nn.Linear(p.dim, p.hidden), nn.ReLU(), nn.Linear(p.hidden, 4))
        with torch.no_grad():  # start near a 2PL: a ~ 1, c ~ 0.05, d ~ 0.95
            self.item[-1].bias.copy_(torch.tensor(self.START))

    START = (0.55, 0.0, -2.2, 2.9)  # raw item outputs of a ~ 1, b = 0, c ~ 0.05, d ~ 0.95

    def raw_items(self) -> torch.Tensor:
        return self.item(self.item_emb.weight)

    def params(self) -> tuple[torch.Tensor, ...]:
        theta = self.ability(self.model_emb.weight)[:, 0]
        return (theta, *self.item_params(self.raw_items()))

    def item_params(self, raw: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(a, b, c, d) from the item branch's raw (I, 4) outputs."""
        a = F.softplus(raw[:, 0])
        b = raw[:, 1]
        c = self.c_max * torch.sigmoid(raw[:, 2])
        d = c + (1 - c) * torch.sigmoid(raw[:, 3])
        return a, b, c, d

    @staticmethod
    def link(theta: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """(M, I) 4PL probability of a correct response."""
        return c[None] + (d - c)[None] * torch.sigmoid(a[None] * (theta[:, None] - b[None]))

    def forward(self) -> torch.Tensor:
        """(M, I) probability of a correct response."""
        return self.link(*self.params())


def fit_psn_irt(responses: object, p: PSNParams, seed: int, mask: object | None = None) -> FourPL:
    """Fit PSN-IRT on the observed cells; return standardised theta and matching a, b.

    The affine gauge: theta' = (theta - mu) / sd, b' = (b - mu) / sd, a' = a * sd (the
    probabilities are unchanged).
    """
    y, m = check_responses(responses, mask)
    torch.manual_seed(seed)
    net = PSNIRT(*y.shape, p)
    yt, wt = torch.from_numpy(y).float(), torch.from_numpy(m).float()
    n_obs = float(wt.sum())
    start = torch.tensor(PSNIRT.START)
    wt = wt / n_obs  # masked mean as a weighted sum (no boolean indexing in the loop)
    opt = torch.optim.Adam(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    for _ in range(p.epochs):
        # one pass through each branch per step (the item branch's raw outputs feed both the link and
        # the prior, the ability branch's theta both the link and its prior)
        theta = net.ability(net.model_emb.weight)[:, 0]
        raw = net.raw_items()
        prob = net.link(theta, *net.item_params(raw)).clamp(1e-6, 1 - 1e-6)
        nll = F.binary_cross_entropy(prob, yt, weight=wt, reduction="sum")
        # MAP: Gaussian priors on the raw item outputs and on theta, per observed cell
        prior = ((raw - start) ** 2).sum() / (2 * p.prior_sd**2) + (theta**2).sum() / 2
        loss = nll + prior / n_obs
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        theta, a, b, c, d = (t.double().numpy() for t in net.params())
    mu, sd = theta.mean(), theta.std() + 1e-12
    return FourPL((theta - mu) / sd, a * sd, (b - mu) / sd, c, d)


def select_items(fit: FourPL, k: int) -> np.ndarray:
    """Indices of the ``k`` items with the largest mean Fisher information over the fitted abilities."""
    if not (1 <= k <= len(fit.b)):
        raise IRTInputError(f"k must lie in [1, {len(fit.b)}], got {k}")
    info = fit.information(fit.theta).mean(axis=0)
    return np.sort(np.argsort(-info, kind="stable")[:k])
