"""``python -m flows run`` (what ``make run`` calls): first line before the heavy imports, and a
params error stops it before any Prefect server is started or contacted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bad_override_exits_2_before_any_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    bad = json.dumps({"prune": {"patterns": ["5:4"]}})
    out = subprocess.run([sys.executable, "-m", "flows", "run", "--paper", "nm_sparsity", "--profile", "smoke",
                          "--overrides", bad], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert out.stdout.splitlines()[0].startswith("reprolab: nm_sparsity (smoke): loading the papers")
    assert "Prefect:" not in out.stdout  # no server chosen, started or contacted
    assert "nm_sparsity.prune.patterns" in out.stderr and "5:4" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "prefect").exists() or not any((tmp_path / "prefect").iterdir())
