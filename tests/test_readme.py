"""The README's commands exist: every `make <target>` it shows is a real target, and the
commands it shows for the CLIs parse."""

import re
import subprocess
import sys

from tasks.platform.params import ROOT

README = (ROOT / "README.md").read_text()


def test_readme_shows_the_two_commands_first():
    first_block = README.split("```")[1]
    assert "make run" in first_block and "make test" in first_block


def test_every_make_target_in_the_readme_exists():
    targets = set(re.findall(r"\bmake ([a-z][a-z0-9_-]*)", README))
    assert {"run", "test", "papers", "ui"} <= targets
    for t in sorted(targets):
        out = subprocess.run(["make", "-n", t], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, f"make {t}: {out.stderr}"


def test_cli_help_and_listing():
    for mod in ("tasks", "flows"):
        out = subprocess.run([sys.executable, "-m", mod, "--help"], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    out = subprocess.run([sys.executable, "-m", "tasks", "papers"], cwd=ROOT, capture_output=True, text=True)
    assert "nm_sparsity" in out.stdout


def test_unknown_paper_is_a_clear_error():
    out = subprocess.run([sys.executable, "-m", "tasks", "run", "--paper", "nope", "--stage", "x"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "unknown paper 'nope'" in out.stderr
