"""The layer rule of the source tree, checked on every import (function-level ones included).

Rings, from the ground up (``docs/contract.md``, "Layout")::

    tasks.platform < kernels < models < tasks.data_prep, tasks.evaluation < tasks.train
      < tasks.sparsity | tasks.distill | tasks.audit | tasks.quant < tasks.papers.<paper>
      < flows.papers.<paper> < flows.local, flows.interrupt < flows.run
      < tasks.__main__, flows.__main__, flows.entrypoints, flows.server, infra, benchmarks

An import may point down a ring or stay inside its own unit; never up, never sideways between
the domains (``sparsity``, ``distill``, ``audit``, ``quant``), and never from one paper's modules
(``tasks/papers/<p>.py``, ``flows/papers/<p>.py``) to another's. There are no import cycles.
The checker runs on the real tree and, as its own test, on a small synthetic tree that breaks
each rule once.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tasks", "flows", "models", "kernels", "infra", "benchmarks")
PLATFORM = ("tasks.platform",)
# Every other package under tasks/ is a domain (tasks/sparsity, tasks/distill, tasks/audit, ...):
# a new tasks/<domain>/ joins the domain ring, apart from its siblings, with no edit here.
SHARED_PACKAGES = ("platform", "evaluation", "papers")
DOMAINS = tuple(
    f"tasks.{d.name}" for d in sorted((ROOT / "tasks").iterdir())
    if (d / "__init__.py").is_file() and d.name not in SHARED_PACKAGES
)
RINGS: list[tuple[str, ...]] = [
    PLATFORM,
    ("kernels",),
    ("models",),
    ("tasks.data_prep", "tasks.evaluation"),
    ("tasks.train",),
    DOMAINS,
    ("tasks.papers",),
    ("flows.papers",),
    ("flows.local", "flows.interrupt"),
    ("flows.run",),
    ("tasks.__main__", "flows.__main__", "flows.entrypoints", "flows.server", "infra", "benchmarks"),
]
APART = DOMAINS  # sibling units that never import each other
PER_PAPER = ("tasks.papers", "flows.papers")  # each <prefix>.<paper> is its own unit


def modules(root: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` for every ``.py`` file of the project packages under ``root``."""
    out = {}
    for pkg in PACKAGES:
        for p in sorted((root / pkg).rglob("*.py")):
            if "__pycache__" not in p.parts:
                out[".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")] = p
    return out


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Project modules ``path`` imports anywhere (module level, functions, ``TYPE_CHECKING``)."""
    deps = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}: relative import (use absolute imports): {ast.unparse(node)}")
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module or ""]
        else:
            continue
        for dep in names:
            while dep and dep not in known:
                dep = dep.rpartition(".")[0]
            if dep:
                deps.add(dep)
    return deps


def graph(root: Path) -> tuple[dict[str, Path], nx.DiGraph]:
    known = modules(root)
    g = nx.DiGraph()
    g.add_nodes_from(known)
    for mod, path in known.items():
        g.add_edges_from((mod, dep) for dep in imports(path, known) if dep != mod)
    return known, g


def unit(mod: str) -> tuple[int, str] | None:
    """(ring, unit) of a module; ``None`` for a bare package face such as ``tasks/__init__.py``."""
    hits = [(i, n) for i, ring in enumerate(RINGS) for n in ring if mod == n or mod.startswith(n + ".")]
    if not hits:
        return None
    ring, prefix = max(hits, key=lambda h: len(h[1]))
    if prefix in PER_PAPER:  # tasks.papers.<p> / flows.papers.<p>: one unit per paper; the face is none
        return (ring, ".".join(mod.split(".")[:3])) if mod != prefix else None
    return ring, prefix


def paper_of(mod: str) -> str | None:
    for prefix in PER_PAPER:
        if mod.startswith(prefix + "."):
            return mod.split(".")[2]
    return None


def cycles(g: nx.DiGraph) -> list[list[str]]:
    return [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]


def violations(known: dict[str, Path], g: nx.DiGraph) -> list[str]:
    """Every import that points up a ring, sideways between apart units, or to another paper."""
    bad = []
    for mod, dep in g.edges:
        here, there = unit(mod), unit(dep)
        p_here, p_there = paper_of(mod), paper_of(dep)
        if p_there is not None and p_here != p_there:
            bad.append(f"{known[mod]}: imports {dep} (another paper's module)")
        elif here is None or there is None or here[1] == there[1]:
            continue
        elif there[0] > here[0]:
            bad.append(f"{known[mod]}: imports {dep} (upward: ring {here[0]} -> {there[0]})")
        elif there[0] == here[0] and (here[1] in APART or p_here is not None):
            bad.append(f"{known[mod]}: imports {dep} (sideways: {here[1]} -> {there[1]})")
    return sorted(bad)


def test_no_import_cycles():
    _, g = graph(ROOT)
    assert not cycles(g), cycles(g)


def test_no_import_points_up_or_sideways():
    known, g = graph(ROOT)
    assert not violations(known, g), "\n".join(violations(known, g))


def test_the_domains_are_found():
    assert {"tasks.sparsity", "tasks.distill", "tasks.audit"} <= set(DOMAINS)


def test_every_module_has_a_ring():
    """A new top-level module or folder must be placed in RINGS (here and in docs/contract.md)."""
    faces = {"tasks", "tasks.papers", "flows", "flows.papers", "models", "kernels", "infra", "benchmarks"}
    loose = [m for m in modules(ROOT) if unit(m) is None and m not in faces]
    assert not loose, f"modules outside every ring (add them to RINGS): {loose}"


def test_methods_grab_bag_is_gone():
    for gone in ("tasks/methods", "tasks/audit.py", "tasks/distill_study.py", "tasks/evaluate.py", "tasks/analysis.py"):
        assert not (ROOT / gone).exists(), gone


def test_every_paper_has_its_declaration_and_its_own_module():
    from flows.papers import discover

    papers = discover()
    assert papers
    for name, paper in papers.items():
        assert Path(paper.module).resolve() == ROOT / "flows" / "papers" / f"{name}.py", (name, paper.module)
        own = ROOT / "tasks" / "papers"
        assert (own / f"{name}.py").is_file() or (own / name / "__init__.py").is_file(), (
            f"paper {name!r} has no tasks/papers/{name}.py (its own computation and report)"
        )
    declared = {p.stem for p in (ROOT / "flows" / "papers").glob("*.py") if not p.stem.startswith("_")}
    assert declared == set(papers)


def test_dvc_cli_does_not_import_prefect():
    """`python -m tasks ...` (what dvc.yaml calls) discovers every paper without Prefect."""
    code = (
        "import sys\n"
        "from tasks.__main__ import main\n"
        "assert main(['papers']) == 0\n"
        "assert main(['dvc-yaml', '--check']) == 0\n"
        "loaded = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        "assert not loaded, loaded[:5]\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


# ---------------------------------------------------------------------------------------
# the checker on a synthetic tree that breaks each rule once
# ---------------------------------------------------------------------------------------

SYNTHETIC = {
    "kernels/__init__.py": "",
    "kernels/nm.py": "",
    "models/__init__.py": "from kernels.nm import x\n",
    "tasks/__init__.py": "",
    "tasks/platform/errors.py": "",
    "tasks/train.py": "from models import y\n\n\ndef f():\n    from tasks.audit.mia import z  # upward, inside a function\n",
    "tasks/sparsity/__init__.py": "",
    "tasks/sparsity/nm.py": "from tasks.train import fit\nimport tasks.audit.mia  # sideways\n",
    "tasks/audit/__init__.py": "",
    "tasks/audit/mia.py": "from tasks.platform.errors import E\n",
    "tasks/papers/__init__.py": "",
    "tasks/papers/a.py": "from tasks.sparsity import nm\nfrom tasks.papers.b import report  # another paper\n",
    "tasks/papers/b.py": "from tasks.audit.mia import m\n",
    "tasks/data_prep.py": "def g():\n    from tasks.evaluation.seeds import s\n",
    "tasks/evaluation/__init__.py": "",
    "tasks/evaluation/seeds.py": "from tasks.data_prep import g  # a cycle with data_prep\n",
    "flows/__init__.py": "",
    "flows/papers/__init__.py": "",
    "flows/papers/a.py": "from tasks.papers import a\nfrom tasks.papers.b import report  # another paper\n",
}


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    for rel, text in SYNTHETIC.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_checker_flags_each_broken_rule(synthetic: Path):
    known, g = graph(synthetic)
    found = violations(known, g)
    text = "\n".join(found)
    assert "tasks/train.py: imports tasks.audit.mia (upward" in text  # function-level import seen
    assert "tasks/sparsity/nm.py: imports tasks.audit.mia (sideways" in text
    assert "tasks/papers/a.py: imports tasks.papers.b (another paper" in text
    assert "flows/papers/a.py: imports tasks.papers.b (another paper" in text
    assert len(found) == 4, text  # nothing else: downward imports and own-paper imports pass
    assert cycles(g) == [["tasks.data_prep", "tasks.evaluation.seeds"]]


def test_checker_passes_a_clean_synthetic_tree(synthetic: Path):
    for rel in ("tasks/train.py", "tasks/sparsity/nm.py", "tasks/papers/a.py", "flows/papers/a.py",
                "tasks/evaluation/seeds.py"):  # drop each rule-breaking line (the commented ones)
        lines = (synthetic / rel).read_text().splitlines()
        (synthetic / rel).write_text("\n".join(ln if "#" not in ln else "    pass" * ln.startswith(" ") for ln in lines) + "\n")
    known, g = graph(synthetic)
    assert violations(known, g) == [] and cycles(g) == []
