"""Latency and size of served models, measured side by side (shared by every ``serve`` stage).

A ``serve`` stage compares a compressed model with its fp32 original on whatever CPU runs it: both
are timed in one loop, alternating repeat by repeat, so both see the same machine load, and the
median over repeats is reported (a preempting neighbour inflates single repeats, not the median).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import torch

__all__ = ["median_ms", "state_bytes"]


def state_bytes(model: torch.nn.Module) -> int:
    """Bytes of every tensor in the model's state_dict."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def median_ms(fns: Mapping[str, Callable], arg: object, repeats: int) -> dict[str, float]:
    """Median wall-clock milliseconds of ``fn(arg)`` per key over ``repeats`` interleaved calls.

    One untimed warm-up call each first (caches, lazy index layouts, a native kernel's first build).
    """
    for fn in fns.values():
        fn(arg)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn(arg)
            times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}
