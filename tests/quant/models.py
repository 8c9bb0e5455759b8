"""A small tinylm for the rotation tests (test_rotation, test_cayley)."""

from __future__ import annotations

import torch

from models.tinylm import TinyLM, TinyLMSpec

SPEC = TinyLMSpec(d_model=32, n_heads=2, n_layers=2, d_ff=48, max_len=32)


def tinylm_with_norms() -> TinyLM:
    """Seeded :data:`SPEC` tinylm whose RMSNorm weights are not all 1, so that folding them is exercised."""
    torch.manual_seed(0)
    m = TinyLM(SPEC).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
    return m
