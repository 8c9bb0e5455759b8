"""`dvc repro` in a temp copy of the repo: reproduces, a second run does nothing, a param
change invalidates only the stages that depend on it, and metrics/plots show."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tasks.platform.params import ROOT

BIN = Path(sys.executable).parent


def _sh(args, cwd, env, timeout=900):
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{args} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    dst = tmp_path_factory.mktemp("dvc") / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and not f.startswith(("tests/", "benchmarks/", "infra/")):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    env = dict(os.environ)
    env.update(PATH=f"{BIN}:{env['PATH']}", REPROLAB_MLFLOW="0", DVC_NO_ANALYTICS="1",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    smoke = _sh([sys.executable, "-m", "tasks", "params", "--profile", "smoke"], dst, env)
    (dst / "params.yaml").write_text(smoke)
    _sh(["git", "init", "-q"], dst, env)
    _sh(["git", "add", "-A"], dst, env)
    _sh(["git", "commit", "-qm", "copy"], dst, env)
    return dst, env


# NOTE: one paper's sub-DAG only (target = its report stage): every paper's stages are generated
# by the same code (checked by test_params and test_invalidation). dp_audit (5 stages, a metric
# and a plot on its report) rather than nm_sparsity (27 stages, each a process importing torch):
# the latter's repro took 15 min of a loaded CI box.
PAPER = "dp_audit"
TARGET = f"{PAPER}__report"


def test_repro_twice_then_param_change(repo):
    dst, env = repo
    dvc = str(BIN / "dvc")
    first = _sh([dvc, "repro", TARGET], dst, env)
    assert f"Running stage '{TARGET}'" in first
    assert (dst / f"artifacts/{PAPER}/report/report.md").is_file()
    second = _sh([dvc, "repro", TARGET], dst, env)
    assert "Running stage" not in second
    status = _sh([dvc, "status", "--with-deps", TARGET], dst, env)
    assert "up to date" in status
    metrics = _sh([dvc, "metrics", "show"], dst, env)
    assert f"artifacts/{PAPER}/report/metrics.json" in metrics
    plot = f"artifacts/{PAPER}/report/band.png"
    plots = _sh([dvc, "plots", "show", plot, "-o", str(dst / "plots_html")], dst, env)
    assert (dst / "plots_html" / "index.html").is_file(), plots

    params = yaml.safe_load((dst / "params.yaml").read_text())
    params[PAPER]["gaussian"]["repeats"] += 1
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = _sh([dvc, "status", "--with-deps", TARGET], dst, env)
    stale = {line.strip().rstrip(":") for line in changed.splitlines() if line.startswith(f"{PAPER}__")}
    # the Gaussian audit's params feed that stage alone (the report follows once its outputs
    # change); never the data or the DP-SGD models
    assert stale == {f"{PAPER}__gaussian"}
    dry = _sh([dvc, "repro", "--dry", TARGET], dst, env)
    assert f"Running stage '{PAPER}__dpsgd'" not in dry and f"Running stage '{PAPER}__prepare'" not in dry
    assert f"Running stage '{PAPER}__gaussian'" in dry

