"""The one selection interface: ``select(pool, budget, selector=..., labelled=, target=, seed=)``.

A **pool** is the set of candidate examples: their ids and the named per-example arrays
("views") that selectors read — ``features`` (n, d), ``probs`` (n, k), ``mc_probs``
(s, n, k), ``labels`` (n,), per-example losses, ... Each selector declares the views it
needs; :func:`select` checks them (present, right length, finite) before the selector runs,
so a selector body holds only its method. A selector returns pool *positions* in pick order
and one score per pick (what it ranked by; larger = picked earlier unless the selector says
otherwise in its docstring). Selectors may stop early (GIO stops when its divergence rises):
fewer picks than ``budget`` is allowed, more is not.

A :class:`Selection` is the artifact: ``to_table()`` gives the parquet of ids, ranks, scores
and the reason (selector + options), so ``dvc diff`` and the run comparison show what
changed between two selections.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import pyarrow as pa

from tasks.platform.errors import ReprolabError
from tasks.platform.registry import Registry

#: Column layout of a selection artifact (parquet).
SELECTION_SCHEMA = pa.schema([
    ("id", pa.int64()), ("rank", pa.int32()), ("score", pa.float64()), ("reason", pa.string()),
])


@dataclass(frozen=True)
class Pool:
    """Candidate examples: unique int ids and named per-example arrays (first axis = example,
    except ``mc_probs``, which is (samples, n, classes))."""

    ids: np.ndarray
    views: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids)
        if ids.ndim != 1 or ids.size == 0:
            raise ReprolabError(f"pool ids must be a non-empty 1-D array, got shape {ids.shape}")
        if not np.issubdtype(ids.dtype, np.integer):
            raise ReprolabError(f"pool ids must be integers, got dtype {ids.dtype}")
        uniq, counts = np.unique(ids, return_counts=True)
        if uniq.size != ids.size:
            raise ReprolabError(f"pool has duplicate ids: {uniq[counts > 1][:10].tolist()}")
        object.__setattr__(self, "ids", ids.astype(np.int64))
        object.__setattr__(self, "views", {k: np.asarray(v) for k, v in self.views.items()})
        for name, arr in self.views.items():
            axis = 1 if name == "mc_probs" else 0
            if arr.ndim <= axis or arr.shape[axis] != ids.size:
                raise ReprolabError(f"pool view {name!r} has shape {arr.shape}; expected {ids.size} examples "
                                    f"on axis {axis}")

    def __len__(self) -> int:
        return int(self.ids.size)

    def view(self, name: str) -> np.ndarray:
        if name not in self.views:
            raise ReprolabError(f"pool has no view {name!r}; it has {sorted(self.views)}")
        return self.views[name]


@dataclass(frozen=True)
class Selection:
    """What a selector picked: ``ids`` in pick order, one ``score`` each, and why."""

    ids: np.ndarray
    scores: np.ndarray
    selector: str
    options: dict[str, Any]
    budget: int
    seed: int

    @property
    def reason(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in sorted(self.options.items()))
        return f"{self.selector}({opts}) seed={self.seed} budget={self.budget}"

    def to_table(self) -> pa.Table:
        n = len(self.ids)
        return pa.table({
            "id": pa.array(self.ids, pa.int64()), "rank": pa.array(np.arange(n, dtype=np.int32)),
            "score": pa.array(np.asarray(self.scores, dtype=np.float64)),
            "reason": pa.array([self.reason] * n, pa.string()),
        }, schema=SELECTION_SCHEMA)


class SelectorFn(Protocol):
    def __call__(self, pool: Pool, budget: int, *, candidates: np.ndarray, labelled: np.ndarray,
                 target: Pool | None, rng: np.random.Generator, **options: Any) -> tuple[np.ndarray, np.ndarray]:
        """Return (positions into ``pool`` in pick order, one score per pick)."""


@dataclass(frozen=True)
class Selector:
    """A registered selector.

    Attributes:
        name: registry key (what ``params.yaml`` names).
        fn: the method; gets ``candidates`` (positions not yet labelled) and ``labelled`` (positions).
        needs: pool views it reads.
        target_needs: target-pool views it reads; non-empty means a target set is required.
        cite: the paper or library the method follows.
    """

    name: str
    fn: SelectorFn
    needs: tuple[str, ...]
    target_needs: tuple[str, ...]
    cite: str

    @property
    def option_names(self) -> tuple[str, ...]:
        sig = inspect.signature(self.fn)
        return tuple(p.name for p in sig.parameters.values()
                     if p.kind is p.KEYWORD_ONLY and p.name not in ("candidates", "labelled", "target", "rng"))


_SELECTORS: Registry[Selector] = Registry("selector")


def selector(name: str, *, needs: Sequence[str] = (), target_needs: Sequence[str] = (), cite: str = ""):
    """Decorator: register ``fn`` as selector ``name`` (duplicate names raise)."""

    def deco(fn: Callable) -> Callable:
        _SELECTORS.add(name, Selector(name, fn, tuple(needs), tuple(target_needs), cite))
        return fn

    return deco


def get_selector(name: str) -> Selector:
    return _SELECTORS.lookup(name)


def selectors() -> list[str]:
    return _SELECTORS.names()


def _check_views(pool: Pool, names: Sequence[str], who: str) -> None:
    for name in names:
        arr = pool.view(name) if name in pool.views else None
        if arr is None:
            raise ReprolabError(f"{who} needs pool view {name!r}; the pool has {sorted(pool.views)}")
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            bad = np.argwhere(~np.isfinite(arr))[0].tolist()
            raise ReprolabError(f"{who}: pool view {name!r} has a non-finite value (NaN/inf) at index {bad}")


def select(pool: Pool, budget: int, *, selector: str, labelled: Sequence[int] | np.ndarray = (),
           target: Pool | None = None, seed: int = 0, **options: Any) -> Selection:
    """Pick up to ``budget`` ids of ``pool`` not in ``labelled`` with ``selector``.

    Args:
        pool: the candidates and their views.
        budget: how many to pick (>= 1, at most the number of unlabelled candidates).
        selector: registry name (see :func:`selectors`).
        labelled: ids already labelled/kept (core-set's centres, the AL loop's labelled set).
        target: the target set for target-aware selectors (GIO, CoLoR-Filter).
        seed: the only source of randomness (a ``numpy`` Generator is built from it).
        **options: the selector's own keyword options (unknown names raise).

    Raises:
        ReprolabError: naming the bad value — budget, unknown selector/option, missing or
            non-finite view, unknown labelled id, empty/missing target, or a selector result
            that is out of range, repeated or non-finite.
    """
    entry = get_selector(selector)
    who = f"selector {selector!r}"
    unknown = sorted(set(options) - set(entry.option_names))
    if unknown:
        raise ReprolabError(f"{who} got unknown option(s) {unknown}; it takes {sorted(entry.option_names)}")
    labelled_ids = np.asarray(labelled, dtype=np.int64).reshape(-1)
    in_pool = np.isin(labelled_ids, pool.ids)
    if not in_pool.all():
        raise ReprolabError(f"{who}: labelled ids not in the pool: {labelled_ids[~in_pool][:10].tolist()}")
    is_labelled = np.isin(pool.ids, labelled_ids)
    candidates = np.flatnonzero(~is_labelled)
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ReprolabError(f"{who}: budget must be an integer >= 1, got {budget!r}")
    if budget > candidates.size:
        raise ReprolabError(f"{who}: budget {budget} is larger than the {candidates.size} unlabelled "
                            f"examples of the pool")
    _check_views(pool, entry.needs, who)
    if entry.target_needs:
        if target is None or len(target) == 0:
            raise ReprolabError(f"{who} needs a non-empty target set (views {list(entry.target_needs)})")
        _check_views(target, entry.target_needs, f"{who} (target set)")
    rng = np.random.default_rng(seed)
    pos, scores = entry.fn(pool, int(budget), candidates=candidates, labelled=np.flatnonzero(is_labelled),
                           target=target, rng=rng, **options)
    pos, scores = np.asarray(pos, dtype=np.int64).reshape(-1), np.asarray(scores, dtype=np.float64).reshape(-1)
    if pos.size != scores.size or pos.size > budget:
        raise ReprolabError(f"{who} returned {pos.size} picks and {scores.size} scores for budget {budget}")
    if pos.size and (not np.isin(pos, candidates).all() or np.unique(pos).size != pos.size):
        raise ReprolabError(f"{who} returned a labelled, repeated or out-of-range position")
    if not np.all(np.isfinite(scores)):
        raise ReprolabError(f"{who} produced non-finite scores (a model gave NaN?)")
    return Selection(pool.ids[pos], scores, selector, dict(options), int(budget), int(seed))


@selector("random", cite="uniform sampling without replacement (every paper's baseline)")
def _random(pool: Pool, budget: int, *, candidates: np.ndarray, labelled: np.ndarray, target: Pool | None,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    pick = rng.choice(candidates, size=budget, replace=False)
    return pick, np.zeros(budget)
