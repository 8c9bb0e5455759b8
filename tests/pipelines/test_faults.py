"""Kill the pipeline mid-run, run it again: completed stages are reused, nothing is corrupted."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from flows.papers import get_paper
from tasks.platform import artifacts
from tasks.platform.params import ROOT

PAPER = get_paper("nm_sparsity")


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(REPROLAB_HOME=str(home), REPROLAB_REPORTS=str(home / "reports"), REPROLAB_MLFLOW="0",
               PREFECT_HOME=str(home / "prefect"), PREFECT_LOCAL_STORAGE_PATH=str(home / "prefect-results"))
    (home / "prefect").mkdir(parents=True, exist_ok=True)
    return env


def _hashes(store: Path) -> dict[str, str]:
    import json

    out = {}
    for mf in store.rglob("manifest.json"):
        for o in json.loads(mf.read_text())["outputs"].values():
            out[o["path"]] = o["sha256"]
    return out


def test_kill_mid_pipeline_then_rerun(tmp_path):
    env = _env(tmp_path)
    cmd = [sys.executable, "-m", "flows", "run", "--paper", "nm_sparsity", "--profile", "smoke"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    store = tmp_path / "store" / "nm_sparsity"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and not list(store.glob("train_digits/*/manifest.json")):
            assert proc.poll() is None, "pipeline ended before it could be killed"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the flow and its ephemeral Prefect server
        proc.wait()
    done_before = _hashes(tmp_path / "store")
    assert done_before, "no stage had completed when the pipeline was killed"
    assert not list(store.glob("report/*/manifest.json")), "pipeline finished before the kill"

    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    after = _hashes(tmp_path / "store")
    for path, sha in done_before.items():  # nothing already produced changed
        assert after[path] == sha
        assert artifacts.sha256_file(path) == sha
    n = len(PAPER.stages)
    stages = len(list(store.glob("*/*/manifest.json")))
    assert stages == n
    assert not list(store.glob("*/.*.partial")), "a killed run's staging dir was left behind"
    done = {Path(p).parent.parent.name for p in done_before}
    assert f"{n - len(done)} of {n} stages computed" in out.stdout
