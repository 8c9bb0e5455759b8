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

Every paper section is validated with its pydantic model (``extra="forbid"``) before
any work starts; a failure raises :class:`~tasks.platform.errors.ParamsError` naming the key
path and the offending value.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ValidationError

from tasks.platform.errors import ParamsError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PARAMS = ROOT / "params.yaml"
RESERVED = {"defaults", "profiles", "dvc_profile"}
PROFILES = ("smoke", "full")


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``over`` merged in (dicts recursively; other values replaced)."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    return raw


def format_validation_error(prefix: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in (prefix, *e["loc"]))
        value = e.get("input")
        shown = json.dumps(value, default=str) if not isinstance(value, Mapping) else "{...}"
        lines.append(f"{loc} = {shown[:120]}: {e['msg']}")
    return "invalid params:\n  " + "\n  ".join(lines)


def section_raw(raw: Mapping[str, Any], paper: str, model: type[BaseModel], profile: str) -> dict:
    """The merged raw section of ``paper``: defaults <- paper section <- profile overlay."""
    if profile not in PROFILES:
        raise ParamsError(f"profile = {profile!r}: unknown profile; choose one of {list(PROFILES)}")
    if paper not in raw:
        raise ParamsError(f"params.yaml has no section {paper!r}")
    defaults = {k: v for k, v in (raw.get("defaults") or {}).items() if k in model.model_fields}
    merged = deep_merge(defaults, raw[paper] or {})
    if profile != "full":
        overlay = ((raw.get("profiles") or {}).get(profile) or {}).get(paper) or {}
        merged = deep_merge(merged, overlay)
    return merged


def validate_section(paper: str, model: type[BaseModel], data: Mapping[str, Any]) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ParamsError(format_validation_error(paper, e)) from None


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
        raise ParamsError(f"{path}: unknown top-level section(s) {sorted(unknown)}; papers: {sorted(papers)}")
    for name in (raw.get("profiles") or {}):
        if name not in PROFILES:
            raise ParamsError(f"profiles.{name}: unknown profile; choose one of {list(PROFILES)}")
    unknown = set(overrides or {}) - set(papers)
    if unknown:
        raise ParamsError(f"overrides for unknown paper(s) {sorted(unknown)}")
    out = {}
    for paper, model in papers.items():
        data = section_raw(raw, paper, model, profile)
        data = deep_merge(data, (overrides or {}).get(paper) or {})
        out[paper] = validate_section(paper, model, data)
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
