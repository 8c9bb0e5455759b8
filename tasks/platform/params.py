"""Loading and validating ``params.yaml``.

Layout (plain data, no executable tags)::

    defaults:            # merged beneath every paper section that has the same field
      train: {...}
    <paper>:             # one section per paper, one subsection per stage section
      data: {...}
      train: {...}
    profiles:
      smoke:             # overlays deep-merged on top (tiny, for tests); "full" = no overlay
        <paper>: {...}

    limits:              # optional: raise a sanity bound explicitly (see LIMITS below)
      seeds: 500

Every paper section is validated with its pydantic model (``extra="forbid"``) before
any work starts; a failure raises :class:`~tasks.platform.errors.ParamsError` naming the key
path and the offending value, one line per problem::

    nm_sparsity.train.seeds.0 = -1: seeds must be in [0, 2**32)

Beyond the models' own field checks, :func:`load_all` rejects what a model cannot see:
duplicate YAML keys (naming the key and line), non-finite floats anywhere, a paper's stage
section missing from the file (code defaults are never used silently), and values above a
*sanity limit* (:data:`LIMITS`: seeds per list, epochs, layer widths, models per audit,
bootstrap replicates, samples). A limit guards against typos such as ``max_epochs: 10**12``;
raise one deliberately with a top-level ``limits:`` section.

The shared field types (:data:`Seed`, :data:`Seeds`, :data:`Width`, :data:`Epochs`,
:data:`SetOf`, ...) are defined here once and used by every params model.
"""

from __future__ import annotations

import collections
import contextvars
import copy
import difflib
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Iterator, Mapping, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, Field, ValidationError

from tasks.platform.errors import ParamsError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PARAMS = ROOT / "params.yaml"
RESERVED = {"defaults", "profiles", "dvc_profile", "limits"}
PROFILES = ("smoke", "full")

# ----------------------------------------------------------------------------------------
# Shared field types (one definition each; every params model uses these)
# ----------------------------------------------------------------------------------------

#: Sanity limits: name -> default maximum. A value above its limit is rejected by
#: :func:`load_all` unless params.yaml raises the limit (``limits: {epochs: 50000}``).
LIMITS: dict[str, int] = {
    "seeds": 100,  # seeds in one list (one model is trained per seed)
    "epochs": 10_000,  # max_epochs / epochs of one fit
    "width": 65_536,  # a hidden layer's width
    "models": 1_024,  # shadow / reference models of one audit
    "bootstrap": 1_000_000,  # bootstrap replicates
    "samples": 10_000_000,  # generated samples
}


_ENFORCED_LIMITS: contextvars.ContextVar[Mapping[str, int] | None] = contextvars.ContextVar(
    "reprolab_limits", default=None
)


@dataclass(frozen=True)
class Limit:
    """Annotation marker: the field's value (an int) or its length (a list) is at most
    ``LIMITS[name]`` unless params.yaml's ``limits:`` raises it. Shown in the JSON schema
    as ``x-limit``.

    NOTE: enforced only while :func:`load_all` validates the file (the gate before any
    work), so a stage that re-validates params already loaded under a raised limit (a
    Prefect task) does not need to know the limits.
    """

    name: str

    def __get_pydantic_core_schema__(self, source, handler):
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, core_schema, handler):
        js = handler(core_schema)
        js["x-limit"] = {"name": self.name, "max": LIMITS[self.name]}
        return js

    def _check(self, v: Any) -> Any:
        limits = _ENFORCED_LIMITS.get()
        if limits is None:
            return v
        size = len(v) if isinstance(v, (tuple, list)) else v
        if isinstance(size, int) and size > limits[self.name]:
            what = f"{size} values, " if isinstance(v, (tuple, list)) else ""
            raise ValueError(
                f"{what}above the sanity limit limits.{self.name} = {limits[self.name]}; if you mean "
                f"it, raise the limit in params.yaml (limits: {{{self.name}: {size}}})"
            )
        return v


def _no_duplicates(v: tuple) -> tuple:
    dups = sorted(repr(x) for x, n in collections.Counter(v).items() if n > 1)
    if dups:
        raise ValueError(f"duplicate value(s) {', '.join(dups)}: each may appear once (the list is a set)")
    return v


def _seed(v: int) -> int:
    if not 0 <= v < 2**32:
        raise ValueError("seeds must be in [0, 2**32)")
    return v


T = TypeVar("T")
#: A list that means a set: duplicates are rejected (never silently collapsed).
SetOf = Annotated[tuple[T, ...], AfterValidator(_no_duplicates), Field(json_schema_extra={"uniqueItems": True})]
#: A random seed: numpy and torch accept [0, 2**32).
Seed = Annotated[int, AfterValidator(_seed), Field(json_schema_extra={"minimum": 0, "exclusiveMaximum": 2**32})]
#: One model per seed: at least one, distinct, at most ``LIMITS["seeds"]``.
Seeds = Annotated[SetOf[Seed], Field(min_length=1), Limit("seeds")]
#: Width of a layer (>= 1, at most ``LIMITS["width"]``).
Width = Annotated[int, Field(ge=1), Limit("width")]
#: Passes over the data (>= 1, at most ``LIMITS["epochs"]``).
Epochs = Annotated[int, Field(ge=1), Limit("epochs")]
#: A finite float (NaN and +-inf rejected). load_all also rejects non-finite floats anywhere.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``over`` merged in (dicts recursively; other values replaced)."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """``yaml.SafeLoader`` that rejects a key repeated in one mapping (YAML says keys are
    unique; PyYAML would keep the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise ParamsError(
                    f"{getattr(self, 'source_name', '<params>')}:{line}: duplicate key {key!r} "
                    f"(first at line {seen[key]}); each key may appear once in a mapping"
                )
            if isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _UniqueKeyLoader.construct_mapping)


def load_yaml_text(text: str, name: str = "<string>") -> Any:
    """``yaml.safe_load`` that raises :class:`ParamsError` on duplicate keys and bad YAML."""
    try:
        loader = _UniqueKeyLoader(text)
        loader.source_name = name
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise ParamsError(f"{name}: not valid YAML: {str(e).replace('<unicode string>', name)}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    text = path.read_text()
    if not text.strip():
        raise ParamsError(f"{path}: the file is empty; it needs one section per paper")
    raw = load_yaml_text(text, str(path))
    if raw is None:
        raise ParamsError(f"{path}: the file has no content (only comments); it needs one section per paper")
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    return raw


# ----------------------------------------------------------------------------------------
# Error messages: "paper.section.key = value: reason", unknown keys with the nearest valid one
# ----------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{...}"
    try:
        text = json.dumps(value, default=str, allow_nan=True)
    except (TypeError, ValueError):
        text = str(value)
    text = text.replace("Infinity", ".inf").replace("NaN", ".nan")
    return text if len(text) <= 80 else text[:77] + "..."


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types inside ``annotation`` (through Annotated, Optional/Union)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(annotation) for t in _unwrap(a)]
    return [annotation]


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that validates the mapping at ``loc`` (``None`` if unknown)."""
    cur: Any = model
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if not (isinstance(cur, type) and issubclass(cur, BaseModel)) or part not in cur.model_fields:
            return None
        nxt = None
        for t in _unwrap(cur.model_fields[part].annotation):
            if isinstance(t, type) and issubclass(t, BaseModel):
                nxt = t
            elif typing.get_origin(t) is dict and parts:  # dict[str, Model]: skip the key
                inner = [v for v in _unwrap(typing.get_args(t)[1]) if isinstance(v, type) and issubclass(v, BaseModel)]
                if inner:
                    parts.pop(0)
                    nxt = inner[0]
        if nxt is None:
            return None
        cur = nxt
    return cur


def unknown_key_hint(key: str, valid: list[str]) -> str:
    """``unknown key; did you mean 'patterns'? valid keys: ...`` (difflib's nearest match)."""
    near = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return f"unknown key; {hint}valid keys: {', '.join(valid)}"


def _reason(e: Mapping[str, Any]) -> str:
    msg = str(e["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    return msg


def validation_lines(prefix: str, err: ValidationError, model: type[BaseModel] | None = None) -> list[str]:
    """One ``prefix.loc = value: reason`` line per pydantic error (no pydantic repr or URL).

    A validator's message that starts with a key path (``train.seeds = [0]: ...``) is joined
    onto ``prefix`` so every line reads ``paper.section.key = value: reason``.
    """
    lines = []
    errors = err.errors(include_url=False)
    for e in errors:
        if e["type"] == "too_short" and any(o["loc"][: len(e["loc"])] == e["loc"] and len(o["loc"]) > len(e["loc"])
                                            for o in errors):
            continue  # pydantic's echo of an item error ("at least 1 item after validation")
        loc = ".".join(str(p) for p in (prefix, *e["loc"]))
        if e["type"] == "extra_forbidden":
            parent = _model_at(model, tuple(e["loc"][:-1])) if model is not None else None
            reason = unknown_key_hint(e["loc"][-1], list(parent.model_fields)) if parent else "unknown key"
            lines.append(f"{loc} = {_show(e.get('input'))}: {reason}")
            continue
        reason = _reason(e)
        if isinstance(e.get("input"), Mapping) and _KEYED.match(reason):  # the validator named the key
            lines.extend(f"{loc}.{part}" for part in reason.split("\n  "))
        elif isinstance(e.get("input"), Mapping):
            lines.append(f"{loc}: {reason}")
        else:
            lines.append(f"{loc} = {_show(e.get('input'))}: {reason}")
    return lines


_KEYED = re.compile(r"^[A-Za-z_][\w]*(\.[\w]+)*( = |: )")


def format_validation_error(prefix: str, err: ValidationError, model: type[BaseModel] | None = None) -> str:
    """``invalid params:`` and one indented line per error (see :func:`validation_lines`)."""
    return "invalid params:\n  " + "\n  ".join(validation_lines(prefix, err, model))


# ----------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------


def section_raw(raw: Mapping[str, Any], paper: str, model: type[BaseModel], profile: str) -> dict:
    """The merged raw section of ``paper``: defaults <- paper section <- profile overlay."""
    if profile not in PROFILES:
        raise ParamsError(f"profile = {profile!r}: unknown profile; choose one of {list(PROFILES)}")
    if paper not in raw:
        raise ParamsError(f"params.yaml has no section {paper!r}")
    section = raw[paper] or {}
    if not isinstance(section, Mapping):
        raise ParamsError(f"{paper} = {_show(section)}: a paper section must be a mapping of stage sections")
    defaults = {k: v for k, v in (raw.get("defaults") or {}).items() if k in model.model_fields}
    merged = deep_merge(defaults, section)
    if profile != "full":
        overlay = ((raw.get("profiles") or {}).get(profile) or {}).get(paper) or {}
        merged = deep_merge(merged, overlay)
    return merged


def _non_finite(obj: Any, path: str) -> Iterator[tuple[str, float]]:
    if isinstance(obj, BaseModel):
        obj = obj.model_dump()
    if isinstance(obj, float) and not math.isfinite(obj):
        yield path, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _non_finite(v, f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _non_finite(v, f"{path}.{i}")


def check_finite(obj: Any, prefix: str) -> None:
    """Raise naming every NaN / inf float in ``obj`` (raw data or a validated model)."""
    bad = [f"{p} = {_show(v)}: must be a finite number" for p, v in _non_finite(obj, prefix)]
    if bad:
        raise ParamsError("invalid params:\n  " + "\n  ".join(bad))


def read_limits(raw: Mapping[str, Any]) -> dict[str, int]:
    """:data:`LIMITS` with params.yaml's ``limits:`` section applied (validated)."""
    given = raw.get("limits") or {}
    if not isinstance(given, Mapping):
        raise ParamsError(f"limits = {_show(given)}: must be a mapping such as {{epochs: 50000}}")
    out = dict(LIMITS)
    for k, v in given.items():
        if k not in LIMITS:
            raise ParamsError(f"limits.{k} = {_show(v)}: {unknown_key_hint(k, list(LIMITS))}")
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ParamsError(f"limits.{k} = {_show(v)}: must be a positive integer")
        out[k] = v
    return out


def _section_fields(model: type[BaseModel]) -> list[str]:
    """The top-level fields of a paper model that are stage sections (sub-models or dicts of them)."""
    out = []
    for name, info in model.model_fields.items():
        for t in _unwrap(info.annotation):
            if (isinstance(t, type) and issubclass(t, BaseModel)) or typing.get_origin(t) is dict:
                out.append(name)
                break
    return out


def check_sections_present(paper: str, model: type[BaseModel], data: Mapping[str, Any]) -> None:
    """Every stage section of the paper must be in params.yaml: code defaults are never used
    silently for a whole section (a deleted ``prune:`` would otherwise run 4 default patterns)."""
    missing = [f for f in _section_fields(model) if f not in data]
    if missing:
        raise ParamsError(
            f"{paper}: missing section(s) {', '.join(missing)}; every stage section must be written "
            f"in params.yaml (write `{missing[0]}: {{}}` to take the code defaults on purpose)"
        )


def validate_section(
    paper: str, model: type[BaseModel], data: Mapping[str, Any], limits: Mapping[str, int] = LIMITS
) -> BaseModel:
    """Validate one merged paper section: finite floats, then the model under the sanity limits."""
    check_finite(data, paper)
    token = _ENFORCED_LIMITS.set(limits)
    try:
        params = model.model_validate(data)
    except ValidationError as e:
        raise ParamsError(format_validation_error(paper, e, model)) from None
    finally:
        _ENFORCED_LIMITS.reset(token)
    check_finite(params, paper)
    return params


def load_all(
    papers: Mapping[str, type[BaseModel]],
    profile: str = "full",
    path: str | Path = DEFAULT_PARAMS,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, BaseModel]:
    """Validate every paper section (``{paper: model}``) of ``path``; return ``{paper: params}``.

    ``overrides`` (``{paper: partial section}``) is merged last: it is how the Prefect UI
    edits parameters of one run.
    """
    raw = read_yaml(path)
    unknown = set(raw) - RESERVED - set(papers)
    if unknown:
        hints = "; ".join(
            f"{u!r}" + (f" (did you mean {near[0]!r}?)" if (near := difflib.get_close_matches(str(u), list(papers), 1)) else "")
            for u in sorted(unknown, key=str)
        )
        raise ParamsError(f"{path}: unknown top-level section(s) {hints}; papers: {sorted(papers)}")
    profiles = raw.get("profiles") or {}
    if not isinstance(profiles, Mapping):
        raise ParamsError(f"profiles = {_show(profiles)}: must be a mapping of profile name -> overlays")
    for name in profiles:
        if name not in PROFILES:
            raise ParamsError(f"profiles.{name}: unknown profile; choose one of {list(PROFILES)}")
    limits = read_limits(raw)
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ParamsError(f"overrides = {_show(overrides)}: must be a mapping {{paper: {{section: {{key: value}}}}}}")
    unknown = set(overrides or {}) - set(papers)
    if unknown:
        raise ParamsError(f"overrides for unknown paper(s) {sorted(unknown)}; papers: {sorted(papers)}")
    out = {}
    for paper, model in papers.items():
        data = section_raw(raw, paper, model, profile)
        check_sections_present(paper, model, data)
        over = (overrides or {}).get(paper) or {}
        if not isinstance(over, Mapping):
            raise ParamsError(f"overrides.{paper} = {_show(over)}: must be a mapping of stage sections")
        data = deep_merge(data, over)
        out[paper] = validate_section(paper, model, data, limits)
    return out


def params_hash(obj: BaseModel | Mapping[str, Any]) -> str:
    """Stable SHA-256 of a params object (its JSON with sorted keys)."""
    data = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def get_path(obj: BaseModel, dotted: str) -> Any:
    """``get_path(p, "data.digits")`` -> ``p.data.digits``; raises naming the missing key."""
    cur: Any = obj
    for part in dotted.split("."):
        if isinstance(cur, BaseModel) and part in type(cur).model_fields:
            cur = getattr(cur, part)
        elif isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        else:
            raise ParamsError(f"params have no key {dotted!r} (missing {part!r})")
    return cur
