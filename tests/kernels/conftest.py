"""Shared helpers for the kernel tests: really-N:M random weights."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    # NOTE: must precede the first triton import (triton jits tl.sum & co. at import time); a CPU
    # build of torch does not import triton by itself.
    os.environ.setdefault("TRITON_INTERPRET", "1")

from kernels.nm import NMWeight


def assert_really_nm(dense: torch.Tensor, n: int, m: int, v: int) -> None:
    """Count non-zeros per group: exactly n, and one pattern per v-row block."""
    out_features, in_features = dense.shape
    nz = (dense != 0).view(out_features, in_features // m, m)
    assert bool((nz.sum(-1) == n).all()), "weight is not exactly N:M"
    for start in range(0, out_features, v):
        block = nz[start : start + v]
        assert bool((block == block[0]).all()), f"block at row {start} does not share a pattern"


def random_nm(out_features: int, in_features: int, n: int, m: int, v: int, dtype=torch.float32,
              seed: int = 0) -> NMWeight:
    """A magnitude-pruned random weight with no zero among the kept values."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out_features, in_features, generator=g)
    w = torch.where(w.abs() < 1e-3, torch.full_like(w, 0.5), w)  # no accidental zeros
    nw = NMWeight.from_dense(w, n=n, m=m, v=v).to(dtype=dtype)
    assert_really_nm(nw.to_dense().float(), n, m, v)
    return nw


@pytest.fixture(autouse=True)
def _no_kernel_env(monkeypatch):
    monkeypatch.delenv("REPROLAB_KERNEL", raising=False)
