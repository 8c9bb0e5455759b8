"""Fair comparisons: every arm of a claim tuned with the same budget (Optuna TPE).

A comparison ("arm A beats arm B") is only as credible as its weakest baseline. This module
gives every arm of a comparison the same hyperparameter search and then judges the claim
twice: at the paper's settings, and with each arm tuned. It knows nothing about any paper or
method; a caller (a paper's tuning stage) supplies the arms' settings, their search spaces and
one ``fit_score`` function.

The pieces, in order of use:

* **Search spaces** (:class:`FloatRange`, :class:`IntRange`, :class:`Choice`), declared per arm
  in the paper's params section, keyed by dotted hyperparameter names into the arm's setting
  (``lr``, ``loss_params.temperature``). :func:`check_spaces` rejects, with a named error, an
  empty range (:class:`EmptyRangeError`), a log scale over a non-positive range
  (:class:`LogScaleError`), a name the arm's params do not have
  (:class:`UnknownHyperparameterError`), a budget field in a space
  (:class:`ReservedHyperparameterError`), the paper's setting outside its space
  (:class:`SettingOutsideSpaceError`) and a space endpoint the arm's params model rejects
  (:class:`InvalidSpaceError`).
* **The budget** (:class:`TuningBudget`): one per comparison, so equal by construction: the
  same number of trials, the same epochs per trial, the same seeds and the same sampler seed
  for every arm. :func:`run_study` also enforces it at run time (:class:`BudgetError`).
* **Selection on validation, the final number on test**: :func:`run_study` never receives the
  test split; ``fit_score`` returns a validation score and the study returns each arm's chosen
  configuration. The final number is the test score of that configuration, computed once per
  arm by the caller (in a pipeline: a stage per tuned arm, the same core as the arm at the
  paper's settings). :func:`check_selection_inputs` refuses a selection stage wired to a test
  split (:class:`TestLeakError`).
* **Trials cached like stages** (:class:`TrialStore`): one ``fit_score`` call is a deterministic
  function of (arm, full configuration, seed, inputs, code), so its score is stored as a
  small JSON file named by the SHA-256 of exactly that; reruns and longer studies reuse it.
* **Fan-out** (:class:`SequentialTrials`, :class:`DaskTrials`, :func:`trial_runner`): the study
  runs in rounds (every arm asks ``budget.batch`` trials, all their fits run together, then
  each arm is told in order), so the fits of a round can run as Dask futures
  (``$REPROLAB_DASK_ADDRESS``) with the same trials and choices as in process (the
  determinism contract: :func:`run_study`).
* **Verdicts** (:class:`TwoVerdicts`, :func:`two_verdicts`): a claim is **robust** only when the
  verdict at the paper's settings and the tuned verdict agree. **Sanity checks**
  (:class:`FloorRule`, :func:`undertuned`) flag an arm below the floor it must clear (a
  distilled student below the student trained alone; a fine-tuned model below the pruned one it
  started from): a sign of an under-tuned baseline.

Assumption: the search uses Optuna's TPE sampler with its defaults (the first 10 trials are
random), seeded with ``budget.sampler_seed`` for every arm; the paper's setting is enqueued as
trial 0 of every arm (``budget.paper_setting_first``), so a tuned arm is never worse *on
validation* than at the paper's setting.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.platform import artifacts
from tasks.platform.errors import ParamsError, ReprolabError
from tasks.platform.stage import store_root

# --------------------------------------------------------------------------------------------
# Named errors
# --------------------------------------------------------------------------------------------


class SearchSpaceError(ParamsError):
    """A search space that cannot be searched; the message names the arm, key and value.

    NOTE: the message starts with the class name, so it stays visible when pydantic wraps the
    error inside a params file's ``ValidationError``.
    """

    def __init__(self, message: str):
        super().__init__(f"{type(self).__name__}: {message}")


class EmptyRangeError(SearchSpaceError):
    """``low >= high`` (nothing to search; a fixed value belongs in the arm's settings) or no choices."""


class LogScaleError(SearchSpaceError):
    """A log-scale range that includes zero or negative values."""


class UnknownHyperparameterError(SearchSpaceError):
    """A hyperparameter name that the arm's params do not have."""


class ReservedHyperparameterError(SearchSpaceError):
    """A budget field (epochs, seeds) in a search space: it would give one arm more budget."""


class SettingOutsideSpaceError(SearchSpaceError):
    """The paper's setting of a hyperparameter lies outside its search space (or has another type)."""


class InvalidSpaceError(SearchSpaceError):
    """A value of the space (an endpoint or a choice) that the arm's params model rejects."""


class BudgetError(ReprolabError):
    """Arms got (or would get) unequal budgets: trials, epochs per trial or seeds."""


class TestLeakError(ReprolabError):
    """Test data wired into the selection of hyperparameters."""

    __test__ = False  # not a pytest test class


# --------------------------------------------------------------------------------------------
# Search-space declarations (params.yaml)
# --------------------------------------------------------------------------------------------


class _Range(BaseModel):
    """A numeric hyperparameter in ``[low, high]`` (inclusive), sampled on a log scale when ``log``.

    :class:`FloatRange` and :class:`IntRange` differ only in the type of their values.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _searchable(self):
        check_range(self.low, self.high, self.log)
        return self

    @staticmethod
    def _is_value(value: Any) -> bool:
        raise NotImplementedError

    def contains(self, value: Any) -> bool:
        return self._is_value(value) and not isinstance(value, bool) and self.low <= value <= self.high

    def values(self) -> tuple[Any, ...]:
        """The values every configuration in the space is checked at (the endpoints)."""
        return (self.low, self.high)


class FloatRange(_Range):
    """A float hyperparameter in ``[low, high]``, sampled on a log scale when ``log``."""

    type: Literal["float"] = "float"

    @staticmethod
    def _is_value(value: Any) -> bool:
        return isinstance(value, (int, float))


class IntRange(_Range):
    """An integer hyperparameter in ``[low, high]`` (inclusive), log-scaled when ``log``."""

    type: Literal["int"] = "int"
    low: int
    high: int

    @staticmethod
    def _is_value(value: Any) -> bool:
        return isinstance(value, int)


class Choice(BaseModel):
    """A categorical hyperparameter: one of ``choices`` (bools, numbers or strings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["categorical"] = "categorical"
    choices: tuple[bool | int | float | str, ...]

    @model_validator(mode="after")
    def _searchable(self):
        if len(self.choices) < 2:
            raise EmptyRangeError(f"choices = {list(self.choices)}: need at least 2 choices to search")
        keys = [json.dumps(c) for c in self.choices]
        if len(set(keys)) != len(keys):
            raise EmptyRangeError(f"choices = {list(self.choices)}: repeated choice")
        return self

    def contains(self, value: Any) -> bool:
        return any(json.dumps(value) == json.dumps(c) for c in self.choices)

    def values(self) -> tuple[Any, ...]:
        return self.choices


Space = Annotated[FloatRange | IntRange | Choice, Field(discriminator="type")]
ArmSpace = dict[str, Space]  # dotted hyperparameter name -> its range


def check_range(low: float, high: float, log: bool) -> None:
    """Raise :class:`EmptyRangeError` for ``low >= high`` and :class:`LogScaleError` for a log
    scale with ``low <= 0`` (checked in this order)."""
    if not (low < high):
        raise EmptyRangeError(f"low = {low} >= high = {high}: an empty range (put a fixed value in the arm's settings)")
    if log and low <= 0:
        raise LogScaleError(f"log = true over [{low}, {high}]: a log scale needs low > 0")


class TuningBudget(BaseModel):
    """The one budget every arm of a comparison is tuned with.

    Attributes:
        n_trials: configurations tried per arm (trial 0 is the paper's setting when
            ``paper_setting_first``).
        max_epochs: epochs per trial; ``None`` = the arms' own (equal) setting.
        seeds: each trial is trained once per seed; its score is the mean over seeds.
        sampler_seed: seed of the TPE sampler (the same for every arm).
        direction: whether a higher validation score is better.
        paper_setting_first: enqueue the paper's setting as trial 0 of every arm.
        batch: trials of an arm sampled together before any of them is scored (1 = each
            trial's sampler sees every earlier trial). It changes the search, not only its
            speed, so it is part of the budget; fits run in parallel across arms and seeds at
            any batch, on Dask (:func:`trial_runner`) with the same results as in process.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_trials: int = Field(default=20, ge=1)
    max_epochs: int | None = Field(default=None, ge=1)
    seeds: tuple[int, ...] = Field(default=(0,), min_length=1)
    sampler_seed: int = 0
    direction: Literal["maximize", "minimize"] = "maximize"
    paper_setting_first: bool = True
    batch: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _distinct_seeds(self):
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds = {list(self.seeds)}: repeated seed")
        return self


class TuningParams(BaseModel):
    """A paper's ``tuning`` params section: the shared budget and each arm's search space.

    Cross-checks against the arms (names, the paper's setting inside each space) need the
    arms' settings: the paper's params model calls :func:`check_spaces`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    budget: TuningBudget = TuningBudget()
    spaces: dict[str, ArmSpace] = Field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Settings and configurations (nested dicts with dotted names)
# --------------------------------------------------------------------------------------------


def leaf_names(setting: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of every leaf of a nested mapping (``{"a": {"b": 1}}`` -> ``["a.b"]``)."""
    out = []
    for k, v in setting.items():
        if isinstance(v, Mapping) and v:
            out += leaf_names(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}")
    return out


def get_value(setting: Mapping[str, Any], name: str) -> Any:
    """The value at dotted ``name``; ``KeyError`` when a part is missing."""
    cur: Any = setting
    for part in name.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            raise KeyError(name)
        cur = cur[part]
    return cur


def with_values(setting: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``setting`` with each dotted name of ``values`` set (parents must exist)."""
    out = copy.deepcopy(dict(setting))
    for name, value in values.items():
        *parents, last = name.split(".")
        cur = out
        for part in parents:
            cur = cur[part]
        cur[last] = value
    return out


def check_spaces(
    spaces: Mapping[str, Mapping[str, Space]],
    settings: Mapping[str, Mapping[str, Any]],
    validate: Callable[[str, dict[str, Any]], Any] | None = None,
    reserved: Sequence[str] = ("max_epochs", "seeds"),
) -> None:
    """Check every arm's search space against the arm's setting (the paper's).

    Args:
        spaces: ``{arm: {dotted name: range}}``; must name exactly the arms of ``settings``.
        settings: ``{arm: the arm's full params as a nested dict}`` (the paper's setting).
        validate: ``validate(arm, config)`` raises if ``config`` is not valid params of
            ``arm`` (e.g. builds its pydantic model); every endpoint and choice is checked.
        reserved: names the budget controls (epochs, seeds); they may not be searched.

    Raises the named :class:`SearchSpaceError` subclasses (see the module docstring).
    """
    if set(spaces) != set(settings):
        missing, extra = sorted(set(settings) - set(spaces)), sorted(set(spaces) - set(settings))
        raise UnknownHyperparameterError(
            f"tuning.spaces names arms {sorted(spaces)}, the comparison has {sorted(settings)}"
            + (f"; missing {missing} (give each arm a space, {{}} for none)" if missing else "")
            + (f"; unknown {extra}" if extra else "")
        )
    for arm, space in spaces.items():
        setting = settings[arm]
        for name, rng in space.items():
            where = f"tuning.spaces.{arm}.{name}"
            if name in reserved or name.split(".")[0] in reserved:
                raise ReservedHyperparameterError(
                    f"{where}: {name!r} is set by the tuning budget (equal for every arm), not searched per arm"
                )
            try:
                paper = get_value(setting, name)
            except KeyError:
                known = [n for n in leaf_names(setting) if n.split(".")[0] not in reserved]
                raise UnknownHyperparameterError(
                    f"{where}: arm {arm!r} has no hyperparameter {name!r}; its params have {known}"
                ) from None
            if not rng.contains(paper):
                raise SettingOutsideSpaceError(
                    f"{where}: the paper's setting {paper!r} is not in the space {rng.model_dump()}"
                )
            if validate is not None:
                for value in rng.values():
                    try:
                        validate(arm, with_values(setting, {name: value}))
                    except (ValueError, TypeError) as e:
                        raise InvalidSpaceError(f"{where} = {value!r} is not valid for arm {arm!r}: {e}") from None


def resolve_epochs(settings: Mapping[str, Mapping[str, Any]], budget: TuningBudget, epochs_key: str) -> int:
    """Epochs per trial: ``budget.max_epochs``, or the arms' setting when they all agree."""
    if budget.max_epochs is not None:
        return budget.max_epochs
    per_arm = {arm: get_value(s, epochs_key) for arm, s in settings.items()}
    if len(set(per_arm.values())) != 1:
        raise BudgetError(f"arms train for different epochs {per_arm}; set tuning.budget.max_epochs")
    return int(next(iter(per_arm.values())))


# --------------------------------------------------------------------------------------------
# PLATFORM: the trial cache
# --------------------------------------------------------------------------------------------


def content_digest(obj: Any) -> str:
    """SHA-256 of an in-memory input: tables (Arrow IPC bytes), tensors (dtype, shape, bytes),
    pydantic models, and mappings/sequences/scalars of them (sorted keys)."""
    h = hashlib.sha256()

    def feed(o: Any) -> None:
        if isinstance(o, pa.Table):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, o.schema) as w:
                w.write_table(o)
            h.update(b"table")
            h.update(sink.getvalue().to_pybytes())
        elif type(o).__module__.startswith("torch") and hasattr(o, "detach"):
            import torch

            t = o.detach().cpu().contiguous().reshape(-1)
            h.update(f"tensor{t.dtype}{tuple(o.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
        elif hasattr(o, "dtype") and hasattr(o, "tobytes"):  # numpy arrays and scalars
            h.update(f"array{o.dtype}{getattr(o, 'shape', ())}".encode())
            h.update(o.tobytes())
        elif isinstance(o, BaseModel):
            feed(o.model_dump(mode="json"))
        elif isinstance(o, Mapping):
            h.update(b"{")
            for k in sorted(o, key=str):
                h.update(json.dumps(str(k)).encode())
                feed(o[k])
            h.update(b"}")
        elif isinstance(o, (list, tuple)):
            h.update(b"[")
            for v in o:
                feed(v)
            h.update(b"]")
        else:
            h.update(json.dumps(o, sort_keys=True).encode())

    feed(obj)
    return h.hexdigest()


class TrialStore:
    """Content-addressed store of trial scores: ``<root>/<key[:2]>/<key>.json``, written atomically.

    ``root=None`` keeps nothing (every call computes). The default root is
    ``$REPROLAB_HOME/store/_trials``.
    """

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root is not None else None

    @classmethod
    def default(cls) -> "TrialStore":
        return cls(store_root() / "_trials")

    def path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        if self.root is None or not self.path(key).is_file():
            return None
        try:
            rec = artifacts.read(self.path(key))
        except ReprolabError:
            return None  # a damaged record is recomputed (and rewritten)
        return rec if isinstance(rec, dict) and rec.get("key") == key else None

    def put(self, key: str, record: Mapping[str, Any]) -> None:
        if self.root is not None:
            artifacts.write(self.path(key), {**record, "key": key})


def trial_key(arm: str, config: Mapping[str, Any], seed: int, context: str) -> str:
    """SHA-256 of everything a trial's score depends on (``context`` = inputs + code digest)."""
    payload = {"arm": arm, "config": config, "seed": seed, "context": context}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# The equal-budget study
# --------------------------------------------------------------------------------------------

# fit_score(arm, config, seed, val) -> (validation score, epochs trained)
FitScore = Callable[[str, dict[str, Any], int, Any], tuple[float, int]]

TRIALS_SCHEMA = pa.schema(
    [
        ("arm", pa.string()),
        ("trial", pa.int64()),
        ("params", pa.string()),  # JSON of the sampled values, sorted keys
        ("val_score", pa.float64()),  # mean over budget.seeds
        ("seed_scores", pa.list_(pa.float64())),  # one per budget.seeds, in order
        ("epochs", pa.int64()),
        ("paper_setting", pa.bool_()),
        ("chosen", pa.bool_()),
    ]
)


@dataclass
class ArmResult:
    """One arm's tuning outcome.

    Attributes:
        paper: the paper's values of the searched hyperparameters.
        tuned: the chosen values (best mean validation score; ties go to the earlier trial).
        config: the full chosen configuration (the arm's setting with ``tuned`` applied).
        paper_val: validation score of the paper's setting (trial 0), if it was enqueued.
        tuned_val: validation score of the chosen trial.
    """

    arm: str
    paper: dict[str, Any]
    tuned: dict[str, Any]
    config: dict[str, Any]
    paper_val: float | None
    tuned_val: float


@dataclass
class StudyResult:
    """What :func:`run_study` returns: per-arm outcomes, the trials table and cost counters.

    ``to_json()`` and ``trials`` are deterministic (cacheable stage outputs); ``stats``
    (seconds, cache hits) is not and is meant for benchmarks and logs only.
    """

    budget: TuningBudget
    epochs: int
    arms: dict[str, ArmResult]
    trials: pa.Table
    stats: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "budget": self.budget.model_dump(mode="json"),
            "epochs_per_trial": self.epochs,
            "arm_order": list(self.arms),
            "arms": {
                a: {
                    "paper": r.paper,
                    "tuned": r.tuned,
                    "tuned_is_paper": r.paper == r.tuned,
                    "paper_val": r.paper_val,
                    "tuned_val": r.tuned_val,
                    "config": r.config,
                }
                for a, r in self.arms.items()
            },
        }


def _distribution(rng: Space):
    import optuna

    if isinstance(rng, FloatRange):
        return optuna.distributions.FloatDistribution(rng.low, rng.high, log=rng.log)
    if isinstance(rng, IntRange):
        return optuna.distributions.IntDistribution(rng.low, rng.high, log=rng.log)
    return optuna.distributions.CategoricalDistribution(list(rng.choices))


# --------------------------------------------------------------------------------------------
# PLATFORM: where the fits of a round run (this process, or fanned out on Dask)
# --------------------------------------------------------------------------------------------

# One fit to run: (arm, full configuration, seed).
FitCall = tuple[str, dict[str, Any], int]


def _timed_fit(fit_score: FitScore, arm: str, config: dict[str, Any], seed: int, val: Any) -> tuple[float, int, float]:
    """One ``fit_score`` call, wherever it runs: ``(score, epochs trained, seconds)``."""
    t0 = time.perf_counter()
    score, trained = fit_score(arm, copy.deepcopy(config), seed, val)
    return float(score), int(trained), time.perf_counter() - t0


class SequentialTrials:
    """Runs the fits of a round one after another in this process (the default)."""

    name = "sequential"

    def __enter__(self) -> "SequentialTrials":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(self, fit_score: FitScore, calls: Sequence[FitCall], val: Any) -> list[tuple[float, int, float]]:
        return [_timed_fit(fit_score, arm, config, seed, val) for arm, config, seed in calls]


class DaskTrials:
    """Fans the fits of a round out as futures on a ``dask.distributed`` scheduler.

    Give it a ``client`` (used as is, not closed) or an ``address`` (a client is opened on
    ``__enter__`` and closed on ``__exit__``). ``fit_score`` and ``val`` (with all that
    ``fit_score`` closes over: training data, teachers) are scattered to every worker once per
    study, then each fit is one future; results come back in submission order.

    NOTE: the workers need this checkout importable (a ``LocalCluster`` started from it is;
    a remote scheduler's workers must run the same commit) and the same torch thread count as
    the sequential path (Dask's nanny sets ``OMP_NUM_THREADS=1``; ``tasks.train`` uses
    ``$REPROLAB_TORCH_THREADS``, default 1), or the scores may differ in the last bits. Only
    scores travel back; the trial cache is read and written by the process that runs the study.
    """

    name = "dask"

    def __init__(self, client: Any = None, address: str | None = None):
        if (client is None) == (address is None):
            raise ReprolabError("DaskTrials needs exactly one of client= or address=")
        self.client, self.address = client, address
        self._own: Any = None
        self._shared: tuple[Any, Any, Any] | None = None  # (fit_score, val, their futures)

    def __enter__(self) -> "DaskTrials":
        if self.client is None:
            from distributed import Client

            try:
                self.client = self._own = Client(self.address, set_as_default=False, timeout=30)
            except OSError as e:
                raise ReprolabError(f"REPROLAB_DASK_ADDRESS = {self.address!r}: no Dask scheduler answers ({e})") from e
        return self

    def __exit__(self, *exc: object) -> None:
        self._shared = None
        if self._own is not None:
            self._own.close()
            self._own = self.client = None

    def run(self, fit_score: FitScore, calls: Sequence[FitCall], val: Any) -> list[tuple[float, int, float]]:
        if not calls:
            return []
        if self._shared is None or self._shared[0] is not fit_score or self._shared[1] is not val:
            # A list, so that a dict-like val is scattered as one object, not key by key.
            self._shared = (fit_score, val, self.client.scatter([fit_score, val], broadcast=True, hash=False))
        fn, split = self._shared[2]
        futures = [self.client.submit(_timed_fit, fn, arm, config, seed, split, pure=False)
                   for arm, config, seed in calls]
        try:
            return list(self.client.gather(futures))
        finally:
            for f in futures:
                f.release()


Trials = SequentialTrials | DaskTrials


def trial_runner(address: str | None = None) -> Trials:
    """Where a study's fits run: on the Dask scheduler at ``address`` or ``$REPROLAB_DASK_ADDRESS``
    (the served stack's setting, ``docs/infra.md``) when one is given, else in this process.

    Unlike ``infra.workloads.run_grid``, an empty address does *not* start a ``LocalCluster``:
    a study fans out only where a scheduler is configured.
    """
    address = address or os.environ.get("REPROLAB_DASK_ADDRESS") or None
    return DaskTrials(address=address) if address else SequentialTrials()


# --------------------------------------------------------------------------------------------
# The rounds of the study
# --------------------------------------------------------------------------------------------


class _Scorer:
    """Scores the fits of a round through the trial cache (and an in-process memo, so a repeated
    configuration is trained once), runs the missing ones on ``trials`` and checks the epochs
    each one reports."""

    def __init__(self, fit_score: FitScore, store: TrialStore, context: str, trials: Trials):
        self.fit_score, self.store, self.context, self.trials = fit_score, store, context, trials
        self.memo: dict[str, float] = {}
        self.computed = self.reused = 0
        self.seconds = 0.0

    def __call__(self, calls: Sequence[FitCall], val: Any, epochs: int) -> list[float]:
        keys = [trial_key(arm, config, seed, self.context) for arm, config, seed in calls]
        todo: dict[str, FitCall] = {}  # first occurrence of each missing key, in call order
        for key, call in zip(keys, calls):
            if key in self.memo or key in todo:
                continue
            rec = self.store.get(key)
            if rec is not None:
                self.memo[key] = float(rec["score"])
            else:
                todo[key] = call
        self.reused += len(calls) - len(todo)
        results = self.trials.run(self.fit_score, list(todo.values()), val)
        for (key, (arm, config, seed)), (score, trained, seconds) in zip(todo.items(), results):
            self.seconds += seconds
            if trained != epochs:
                raise BudgetError(f"arm {arm!r} trained {trained} epochs in a trial whose budget is {epochs}")
            if not math.isfinite(score):
                raise ReprolabError(f"arm {arm!r}, seed {seed}: non-finite validation score {score} for {config}")
            self.store.put(key, {"arm": arm, "seed": seed, "score": score})
            self.memo[key] = score
            self.computed += 1
        return [self.memo[k] for k in keys]


class _ArmSearch:
    """One arm's TPE study (its own sampler, seeded with ``budget.sampler_seed``) and its trials."""

    def __init__(self, arm: str, setting: Mapping[str, Any], space: Mapping[str, Space], budget: TuningBudget):
        import optuna

        self.arm, self.setting, self.space, self.budget = arm, setting, space, budget
        self.study = optuna.create_study(
            direction=budget.direction, sampler=optuna.samplers.TPESampler(seed=budget.sampler_seed)
        )
        self.paper = {name: get_value(setting, name) for name in space}
        if budget.paper_setting_first and space:
            self.study.enqueue_trial(self.paper)
        self.dists = {name: _distribution(rng) for name, rng in space.items()}
        self.rows: list[dict[str, Any]] = []

    def ask(self, k: int) -> list[Any]:
        """``k`` trials, all sampled before any of them is told (one batch)."""
        return [self.study.ask(self.dists) for _ in range(k)]

    def tell(self, trial: Any, seed_scores: list[float], epochs: int) -> None:
        value = sum(seed_scores) / len(seed_scores)
        self.study.tell(trial, value)
        i = len(self.rows)
        self.rows.append(
            {
                "arm": self.arm, "trial": i, "params": json.dumps(trial.params, sort_keys=True), "val_score": value,
                "seed_scores": seed_scores, "epochs": epochs,
                "paper_setting": self.budget.paper_setting_first and i == 0, "chosen": False,
                "_values": dict(trial.params),
            }
        )

    def result(self) -> tuple[ArmResult, list[dict[str, Any]]]:
        sign = 1.0 if self.budget.direction == "maximize" else -1.0
        best = max(self.rows, key=lambda r: (sign * r["val_score"], -r["trial"]))
        best["chosen"] = True
        result = ArmResult(
            arm=self.arm,
            paper=self.paper,
            tuned=best["_values"] if self.space else {},
            config=with_values(self.setting, best["_values"]),
            paper_val=self.rows[0]["val_score"] if self.budget.paper_setting_first else None,
            tuned_val=best["val_score"],
        )
        return result, [{k: v for k, v in r.items() if k != "_values"} for r in self.rows]


def run_study(
    settings: Mapping[str, Mapping[str, Any]],
    spaces: Mapping[str, Mapping[str, Space]],
    budget: TuningBudget,
    fit_score: FitScore,
    *,
    val: Any,
    context: str = "",
    store: TrialStore | None = None,
    validate: Callable[[str, dict[str, Any]], Any] | None = None,
    epochs_key: str = "max_epochs",
    trials: Trials | None = None,
) -> StudyResult:
    """Tune every arm with the same budget; select each arm's configuration on validation.

    The search runs in rounds: in each round every arm asks ``budget.batch`` trials of its own
    TPE study (the last round fewer, so every arm gets exactly ``budget.n_trials``), all their
    fits (trials x ``budget.seeds``, every arm) run together on ``trials``, then each arm is told
    its scores in the order it asked. **Determinism contract**: an arm's trials depend only on
    its setting, its space, the budget (``sampler_seed`` and ``batch`` included) and the scores;
    the scores are a deterministic function of (arm, configuration, seed, inputs, code), so the
    trials table, the chosen configurations and the trial cache are the same whichever runner
    runs the fits (in process or on any number of Dask workers) and in whatever order they
    finish. ``batch`` is part of the search (a larger batch samples more trials from the same
    history), hence of the budget, equal for every arm.

    Args:
        settings: ``{arm: full params as a nested dict}``, the paper's setting of each arm.
        spaces: ``{arm: {dotted name: range}}`` (checked with :func:`check_spaces`).
        budget: the one budget of every arm.
        fit_score: ``fit_score(arm, config, seed, val) -> (score, epochs trained)``: train
            ``arm`` at ``config`` with ``seed`` on the training data it closes over (never a
            test split) and score the model on ``val``. It must train exactly
            ``config[epochs_key]`` epochs (the budget's). It must be picklable to fan out on Dask.
        val: the validation split (the only data selection sees besides the training data).
        context: digest of what ``fit_score`` closes over (training data, teachers) and of
            the code; with the digest of ``val`` it keys every cached trial.
        store: trial cache (default: none).
        validate: see :func:`check_spaces`.
        epochs_key: dotted name of the epochs in a setting.
        trials: where the fits run (default :func:`trial_runner`: Dask when
            ``$REPROLAB_DASK_ADDRESS`` is set, else this process).

    Returns:
        per arm the chosen configuration (the paper's epochs, not the budget's: the final run
        trains as the arm at the paper's settings does) and the table of every trial.
    """
    check_spaces(spaces, settings, validate, reserved=(epochs_key, "seeds"))
    epochs = resolve_epochs(settings, budget, epochs_key)
    context = content_digest({"context": context, "val": val})
    trials = trials if trials is not None else trial_runner()
    t0 = time.perf_counter()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searches = [_ArmSearch(arm, settings[arm], spaces[arm], budget) for arm in settings]
    rounds = 0
    with trials:
        score = _Scorer(fit_score, store or TrialStore(None), context, trials)
        for start in range(0, budget.n_trials, budget.batch):  # every arm: the same rounds, the same budget
            k = min(budget.batch, budget.n_trials - start)
            asked = [(s, trial, with_values(s.setting, {**trial.params, epochs_key: epochs}))
                     for s in searches for trial in s.ask(k)]
            scores = iter(score([(s.arm, config, seed) for s, _, config in asked for seed in budget.seeds], val, epochs))
            for s, trial, _ in asked:
                s.tell(trial, [next(scores) for _ in budget.seeds], epochs)
            rounds += 1
    arms, rows = {}, []
    for s in searches:
        arms[s.arm], arm_rows = s.result()
        rows += arm_rows
    table = pa.Table.from_pylist(rows, schema=TRIALS_SCHEMA)
    check_equal_budget(table, budget)
    stats = {"seconds": time.perf_counter() - t0, "fits_computed": score.computed, "fits_reused": score.reused,
             "fit_seconds": score.seconds, "rounds": rounds, "runner": trials.name}
    return StudyResult(budget=budget, epochs=epochs, arms=arms, trials=table, stats=stats)


def check_selection_inputs(stage: str, inputs: Mapping[str, str]) -> None:
    """Raise :class:`TestLeakError` if a selection stage's inputs (``{arg: "<stage>.<output>"}``)
    include a test split (an argument or output named ``test``)."""
    leaks = sorted(arg for arg, ref in inputs.items() if arg == "test" or ref.rsplit(".", 1)[-1] == "test")
    if leaks:
        raise TestLeakError(
            f"stage {stage!r} selects hyperparameters but takes test data {[inputs[a] for a in leaks]}: "
            "selection may use training and validation data only"
        )


def check_equal_budget(trials: pa.Table, budget: TuningBudget | None = None) -> None:
    """Raise :class:`BudgetError` unless every arm of the trials table had the same number of
    trials, the same epochs per trial and the same number of seeds (and, given ``budget``,
    exactly its trials, epochs and seeds)."""
    artifacts.check_schema(trials, TRIALS_SCHEMA, "trials table")
    per_arm: dict[str, dict[str, Any]] = {}
    for r in trials.to_pylist():
        a = per_arm.setdefault(r["arm"], {"trials": 0, "epochs": set(), "seeds": set()})
        a["trials"] += 1
        a["epochs"].add(r["epochs"])
        a["seeds"].add(len(r["seed_scores"]))
    shape = {arm: (a["trials"], tuple(sorted(a["epochs"])), tuple(sorted(a["seeds"]))) for arm, a in per_arm.items()}
    if len(set(shape.values())) > 1:
        raise BudgetError(f"unequal tuning budgets (trials, epochs, seeds per trial) per arm: {shape}")
    if budget is not None and shape:
        n, eps, seeds = next(iter(shape.values()))
        want_epochs = (budget.max_epochs,) if budget.max_epochs is not None else eps
        if n != budget.n_trials or eps != want_epochs or seeds != (len(budget.seeds),):
            raise BudgetError(
                f"trials table gives each arm {n} trials x epochs {eps} x {seeds} seeds; the budget is "
                f"{budget.n_trials} trials x {budget.max_epochs or 'setting'} epochs x {len(budget.seeds)} seeds"
            )


# --------------------------------------------------------------------------------------------
# Verdicts and sanity checks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TwoVerdicts:
    """One claim judged at the paper's settings and with every arm tuned on the same budget.

    ``robust`` only when the two verdicts agree; otherwise the verdict depends on tuning.
    """

    claim: str
    at_paper: str
    tuned: str

    @property
    def robust(self) -> bool:
        return self.at_paper == self.tuned

    @property
    def status(self) -> str:
        return "robust" if self.robust else "depends on tuning"


def two_verdicts(at_paper: Mapping[str, str], tuned: Mapping[str, str]) -> list[TwoVerdicts]:
    """Pair ``{claim: verdict}`` at the paper's settings with the tuned ``{claim: verdict}``."""
    if set(at_paper) != set(tuned):
        raise ReprolabError(f"verdicts name different claims: {sorted(set(at_paper) ^ set(tuned))}")
    return [TwoVerdicts(c, at_paper[c], tuned[c]) for c in at_paper]


@dataclass(frozen=True)
class FloorRule:
    """``arm`` should not score below ``floor`` (mean over common seeds); ``what`` says why.

    E.g. ``FloorRule("kd", "ce", "a distilled student below the student trained alone")``.
    """

    arm: str
    floor: str
    what: str


@dataclass(frozen=True)
class Flag:
    """A sanity check that failed: ``arm`` scored ``diff`` below ``floor``."""

    rule: FloorRule
    arm_mean: float
    floor_mean: float

    @property
    def diff(self) -> float:
        return self.arm_mean - self.floor_mean

    def message(self, scale: float = 100.0, unit: str = "pts") -> str:
        return (
            f"possibly under-tuned: {self.rule.arm} ({self.arm_mean:.4g}) is {abs(self.diff) * scale:.2f} {unit} "
            f"below {self.rule.floor} ({self.floor_mean:.4g}): {self.rule.what}"
        )


def undertuned(
    rules: Sequence[FloorRule], values: Mapping[str, Mapping[int, float]], higher_is_better: bool = True
) -> list[Flag]:
    """The rules whose arm's mean (over the seeds both arms have) falls below its floor's."""
    flags = []
    for rule in rules:
        for name in (rule.arm, rule.floor):
            if name not in values:
                raise ReprolabError(f"sanity rule {rule}: no values for {name!r}; have {sorted(values)}")
        seeds = sorted(set(values[rule.arm]) & set(values[rule.floor]))
        if not seeds:
            raise ReprolabError(f"sanity rule {rule}: {rule.arm!r} and {rule.floor!r} share no seed")
        a = sum(values[rule.arm][s] for s in seeds) / len(seeds)
        b = sum(values[rule.floor][s] for s in seeds) / len(seeds)
        if (a < b) if higher_is_better else (a > b):
            flags.append(Flag(rule, a, b))
    return flags
