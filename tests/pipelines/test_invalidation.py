"""Per-paper invalidation: a paper's stage keys and dvc.yaml deps cover the shared layers plus
that paper's own two modules, so editing one paper's module reruns that paper alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tasks.platform.params import ROOT

# Runs inside a copy of the source tree: every stage key of every paper, then again after each
# whitespace edit named on the command line; prints {edited file: [papers whose keys changed]}.
KEYS = """
import json, sys
from flows.papers import discover
from tasks.platform import stage
from tasks.platform.params import ROOT, load_all

papers = discover()
params = load_all({n: p.params_model for n, p in papers.items()}, "smoke")

def keys():
    stage.code_digest.cache_clear()
    return {(n, s.name): stage.stage_key(p, s, params[n], {}) for n, p in papers.items() for s in p.stages}

before, out = keys(), {}
for rel in sys.argv[1:]:
    f = ROOT / rel
    f.write_text(f.read_text() + "\\n")
    after = keys()
    changed = {k for k in after if after[k] != before[k]}
    whole = sorted({n for n, _ in changed if all((n, s.name) in changed for s in papers[n].stages)})
    out[rel] = {"papers": sorted({n for n, _ in changed}), "whole": whole}
    before = after
print(json.dumps(out))
"""


def test_editing_one_paper_changes_only_that_papers_stage_keys(tmp_path):
    for d in ("tasks", "flows", "models", "kernels"):
        shutil.copytree(ROOT / d, tmp_path / d, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "params.yaml", tmp_path / "params.yaml")
    edits = ["tasks/papers/pld.py", "flows/papers/nm_sparsity.py", "tasks/distill/losses/kd.py"]
    r = subprocess.run([sys.executable, "-c", KEYS, *edits], cwd=tmp_path, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["tasks/papers/pld.py"] == {"papers": ["pld"], "whole": ["pld"]}
    assert out["flows/papers/nm_sparsity.py"] == {"papers": ["nm_sparsity"], "whole": ["nm_sparsity"]}
    everyone = sorted(p.stem for p in (ROOT / "flows" / "papers").glob("[!_]*.py"))
    assert out["tasks/distill/losses/kd.py"]["whole"] == everyone  # a shared layer: every paper reruns


def test_dvc_deps_name_only_shared_layers_and_the_papers_own_modules():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, st in stages.items():
        paper = name.split("__")[0]
        deps = st["deps"]
        assert "tasks" not in deps, name
        for prefix in ("tasks/papers", "flows/papers"):
            own = [d for d in deps if d.startswith(prefix + "/") and d != f"{prefix}/__init__.py"]
            assert own == [f"{prefix}/{paper}.py"], (name, own)
        for shared in ("tasks/train.py", "tasks/evaluation", "models", "kernels"):
            assert shared in deps, (name, shared)
        assert all(Path(ROOT / d).exists() for d in deps if not d.startswith("artifacts/")), name
