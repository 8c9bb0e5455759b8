"""dropout_rashomon end to end on the smoke profile (stage shell, no Prefect) and its CLI errors."""

import subprocess
import sys

from tasks.platform import artifacts
from tasks.platform.params import ROOT
from tasks.platform.report import VERDICTS


def test_smoke_pipeline_reports_every_claim(smoke_results):
    r = smoke_results("dropout_rashomon")
    claims = artifacts.read(r["report"].path("claims"))
    assert len(claims["claims"]) == 7 and all(c["verdict"] in VERDICTS for c in claims["claims"])
    speed = claims["claims"][0]
    assert "faster than retraining" in speed["claim"] and "x [" in speed["measured"]
    multi = artifacts.read(r["explore_digits"].path("multiplicity"))
    assert set(multi.column("method").to_pylist()) == {"retrain", "dropout_bernoulli", "dropout_gaussian", "awp"}
    # the base model is always in its own epsilon set: eps = 0 metrics exist, never NaN
    for col in ("ambiguity", "discrepancy", "vpr"):
        assert all(0.0 <= v <= 1.0 for v in multi.column(col).to_pylist())
    text = artifacts.read(r["report"].path("report"))
    assert "never on test labels" in text


def test_cli_refuses_negative_epsilon_and_writes_nothing(tmp_path):
    params = tmp_path / "params.yaml"
    raw = (ROOT / "params.yaml").read_text().replace("eps_main: 0.02\n", "eps_main: -0.01\n", 1)
    params.write_text(raw)
    out = subprocess.run(
        [sys.executable, "-m", "tasks", "run", "--paper", "dropout_rashomon", "--stage", "explore_digits",
         "--profile", "smoke", "--params", str(params)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 2
    assert "dropout_rashomon.explore" in out.stderr and "eps_main" in out.stderr
    assert out.stdout == ""
    assert not (ROOT / "artifacts" / "dropout_rashomon").exists()
