"""The DVC path (``python -m tasks ...``, what dvc.yaml calls) never imports Prefect: papers only
declare their stages; flows are built in ``flows/run.py`` (issue 13)."""

import subprocess
import sys

from tasks.platform.params import ROOT

PROBE = """
import runpy, sys
sys.argv = ["tasks", "papers"]
try:
    runpy.run_module("tasks", run_name="__main__")
except SystemExit as e:
    assert not e.code, e.code
from flows.papers import discover
assert discover(), "no paper discovered"
print(sorted(m for m in sys.modules if m == "prefect" or m.startswith("prefect.")))
"""


def test_discovering_papers_through_the_tasks_cli_imports_no_prefect():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-2000:]
