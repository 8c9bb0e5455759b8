"""CoLoR-Filter: Conditional Loss Reduction Filtering for targeted LM pre-training (Brandfonbrener
et al. 2024; seed 002_e77702a5ff075a7b.txt #18; round2_candidates.md §1.5).

Two auxiliary language models score every pool sequence x: a *prior* model (trained on generic
pool data) and a *conditional* model (the prior fine-tuned on a small target-domain set). The
score is the conditional loss reduction

    score(x) = loss_prior(x) - loss_conditional(x)

(per-token mean negative log-likelihood; large = the target data made x much more likely, i.e.
x looks like the target). Aggressiveness tau: a uniformly random candidate subset of
``tau * budget`` pool sequences is drawn and its ``budget`` top-scoring sequences are kept, so
tau = 1 is random selection and larger tau selects more aggressively (the released selection
script draws the candidates the same way: it is the compute saving of the method).

The selector is model-free: the pool carries the two loss views (``prior_loss``,
``conditional_loss``), computed by the paper's stage with whatever models it trains, so NaN
losses (a diverged model) are refused by :func:`~tasks.data_selection.selection.select` before
the selector runs.
"""

from __future__ import annotations

import numpy as np

from tasks.data_selection.selection import Pool, selector
from tasks.platform.errors import ReprolabError


def color_scores(prior_loss: np.ndarray, conditional_loss: np.ndarray) -> np.ndarray:
    """(n,) conditional loss reduction ``prior - conditional`` (module docstring)."""
    prior, cond = np.asarray(prior_loss, dtype=np.float64), np.asarray(conditional_loss, dtype=np.float64)
    if prior.shape != cond.shape or prior.ndim != 1:
        raise ReprolabError(f"color_scores: prior {prior.shape} and conditional {cond.shape} losses must be "
                            "1-D of the same length")
    if not (np.isfinite(prior).all() and np.isfinite(cond).all()):
        raise ReprolabError("color_scores: a loss is NaN or infinite (did an auxiliary model diverge?)")
    return prior - cond


@selector("color_filter", needs=("prior_loss", "conditional_loss"),
          cite="Brandfonbrener et al. 2024, CoLoR-Filter: Conditional Loss Reduction Filtering")
def color_filter(pool: Pool, budget: int, *, candidates: np.ndarray, labelled: np.ndarray, target: Pool | None,
                 rng: np.random.Generator, tau: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Top ``budget`` of a random ``tau * budget`` candidate subset by ``prior - conditional`` loss
    (score = that reduction; picks in descending order)."""
    if not tau >= 1.0:
        raise ReprolabError(f"color_filter: tau must be >= 1 (tau = candidates / kept), got {tau!r}")
    # PAPER: the random candidate subset (all candidates when tau * budget exceeds them)
    n_cand = min(candidates.size, int(round(tau * budget)))
    subset = rng.choice(candidates, size=n_cand, replace=False)
    s = color_scores(pool.view("prior_loss")[subset], pool.view("conditional_loss")[subset])
    # PAPER: keep the top-k by conditional loss reduction (stable order: ties keep the draw order)
    order = np.argsort(-s, kind="stable")[:budget]
    return subset[order], s[order]
