"""The params cases of the round-2 reliability probe (shared/research/reliability_probe_round2.md,
section 2), as edits of the real params.yaml: ``CASES = [(number, description, edit)]``.

``edit(raw)`` mutates the parsed document; ``edit`` may instead be a ``str -> str`` function
of the file's text (``TEXT_CASES``) for what only text can express (duplicate keys, tabs).
Used by tests/test_params.py and to re-measure the probe's count.
"""

from __future__ import annotations

from typing import Any, Callable


def _at(raw: dict, path: str) -> dict:
    cur = raw
    for p in path.split("."):
        cur = cur.setdefault(p, {})
    return cur


def _set(path: str, key: str, value: Any) -> Callable[[dict], None]:
    return lambda raw: _at(raw, path).__setitem__(key, value)


def _smoke(path: str, key: str, value: Any) -> Callable[[dict], None]:  # where the probe ran them
    return _set(f"profiles.smoke.nm_sparsity.{path}", key, value)


def _del(path: str, key: str) -> Callable[[dict], None]:
    return lambda raw: _at(raw, path).pop(key)


NM = "nm_sparsity"
CASES: list[tuple[int, str, Callable[[dict], None]]] = [
    (1, 'prune.patterns: ["5:4"]', _set(f"{NM}.prune", "patterns", ["5:4"])),
    (2, 'patterns: ["0:4"]', _set(f"{NM}.prune", "patterns", ["0:4"])),
    (3, 'patterns: ["2-4"]', _set(f"{NM}.prune", "patterns", ["2-4"])),
    (4, 'patterns: ["2:0"]', _set(f"{NM}.prune", "patterns", ["2:0"])),
    (5, 'patterns: "2:4"', _set(f"{NM}.prune", "patterns", "2:4")),
    (6, "patterns: []", _set(f"{NM}.prune", "patterns", [])),
    (7, "train.lr: -0.01", _set(f"{NM}.train", "lr", -0.01)),
    (8, "train.max_epochs: 0", _set(f"{NM}.train", "max_epochs", 0)),
    (9, 'max_epochs: "ten"', _set(f"{NM}.train", "max_epochs", "ten")),
    (10, "max_epochs: 2.5", _set(f"{NM}.train", "max_epochs", 2.5)),
    (11, "train.seeds: [0]", _set(f"{NM}.train", "seeds", [0])),
    # the probe used 100 000 seeds (rejected the same way, measured); 1 000 keeps the test quick
    (12, "train.seeds: 1 000 seeds", _set(f"{NM}.train", "seeds", list(range(1_000)))),
    (13, "train.seeds: [0, 0, 1]", _smoke("train", "seeds", [0, 0, 1])),
    (14, "train.seeds: [-1, 2]", _smoke("train", "seeds", [-1, 2])),
    (15, "train.seeds: [2**70, 1]", _smoke("train", "seeds", [2**70, 1])),
    (16, "top-level nm_sparsiti:", lambda raw: raw.__setitem__("nm_sparsiti", raw.pop(NM))),
    (17, "prune.pattern: (typo)", _set(f"{NM}.prune", "pattern", ["2:4"])),
    (18, "train.model.activation:", _set(f"{NM}.train.model", "activation", "gelu")),
    (19, "prune: section deleted", _del(NM, "prune")),
    (20, "nm_sparsity: section deleted", lambda raw: raw.pop(NM)),
    (24, "top level is a list", None),  # text case below
    (27, "data.digits.val_fraction: 1.5", _set(f"{NM}.data.digits", "val_fraction", 1.5)),
    (28, "val_fraction + test_fraction = 0.95", _set(f"{NM}.data.digits", "val_fraction", 0.7)),
    (29, "data.mnist1d.num_samples: 0", _set(f"{NM}.data.mnist1d", "num_samples", 0)),
    (30, "prune.vectors: [0]", _set(f"{NM}.prune", "vectors", [0])),
    (31, "prune.layers: everything", _set(f"{NM}.prune", "layers", "everything")),
    (32, "distill.loss: kdd", _set(f"{NM}.distill", "loss", "kdd")),
    (33, "audit.attacks: [loss, magic]", _set(f"{NM}.audit", "attacks", ["loss", "magic"])),
    (34, "audit.fpr: 2.0", _set(f"{NM}.audit", "fpr", 2.0)),
    (35, "report.alpha: 0", _set(f"{NM}.report", "alpha", 0)),
    (36, "finetune.lr: .nan", _set(f"{NM}.finetune", "lr", float("nan"))),
    (37, "train.lr: .inf", _set(f"{NM}.train", "lr", float("inf"))),
    (38, "train.model.arch: resnet", _set(f"{NM}.train.model", "arch", "resnet")),
    (39, "model.hidden: [-5, 16]", _set(f"{NM}.train.model", "hidden", [-5, 16])),
    (40, "model.dropout: 1.0", _set(f"{NM}.train.model", "dropout", 1.0)),
    (41, "profiles.turbo:", _set("profiles", "turbo", {NM: {}})),
    (42, "unknown key in profiles.smoke.nm_sparsity.train", _smoke("train", "epochz", 3)),
    (43, 'defaults.train.lr: "fast"', _set("defaults.train", "lr", "fast")),
    (44, "finetune.batch_size: 0", _set(f"{NM}.finetune", "batch_size", 0)),
    (45, "serve.impl: cuda_magic", _set(f"{NM}.serve", "impl", "cuda_magic")),
    (47, "model.hidden: [0]", _smoke("train.model", "hidden", [0])),
    (48, "data.digits.max_samples: 30", _smoke("data.digits", "max_samples", 30)),
    (49, "logit_standardization.arms.kd.loss: nope", _set("logit_standardization.arms.kd", "loss", "nope")),
    (50, "data.digits.dataset: mnist1d", _set(f"{NM}.data.digits", "dataset", "mnist1d")),
    (51, "distill.loss_params.temprature", _set(f"{NM}.distill.loss_params", "temprature", 4.0)),
    (52, "train.max_epochs: 10**12", _set(f"{NM}.train", "max_epochs", 10**12)),
    (53, "data.mnist1d.noise_scale: .inf", _set(f"{NM}.data.mnist1d", "noise_scale", float("inf"))),
    (54, "audit.headline: grad_norm_x", _set(f"{NM}.audit", "headline", "grad_norm_x")),
    (55, 'data.digits.seed: "zero"', _set(f"{NM}.data.digits", "seed", "zero")),
    (56, "model.hidden: [-8, 16]", _smoke("train.model", "hidden", [-8, 16])),
]
CASES = [c for c in CASES if c[2] is not None]

TEXT_CASES: list[tuple[int, str, Callable[[str], str]]] = [
    (21, "YAML: unclosed [", lambda t: t.replace("seeds: [0, 1, 2, 3, 4]", "seeds: [0, 1, 2, 3, 4", 1)),
    (22, "YAML: tab indentation", lambda t: t.replace("\n  train:\n", "\n\ttrain:\n", 1)),
    (23, "empty params.yaml", lambda t: ""),
    (24, "top level is a list", lambda t: "- nm_sparsity\n- pld\n"),
    (25, "!!python/object/apply:os.system tag",
     lambda t: t.replace("    max_epochs: 30\n", "    max_epochs: !!python/object/apply:os.system ['true']\n", 1)),
    (26, "duplicate key (max_epochs: 30 then max_epochs: 1)",
     lambda t: t.replace("    max_epochs: 30\n", "    max_epochs: 30\n    max_epochs: 1\n", 1)),
]
#: The 14 the probe found accepted by `python -m tasks validate` (section "five most serious", 3).
PREVIOUSLY_ACCEPTED = {12, 13, 14, 15, 19, 26, 37, 38, 45, 47, 48, 52, 53, 56}
