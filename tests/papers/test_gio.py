"""gio end to end on the smoke profile (stage shell, no Prefect)."""

import numpy as np

from tasks.data_selection.selection import SELECTION_SCHEMA
from tasks.platform import artifacts
from tasks.platform.report import VERDICTS


def test_smoke_pipeline_reports_every_claim(smoke_results):
    r = smoke_results("gio")
    claims = artifacts.read(r["report"].path("claims"))
    assert len(claims["claims"]) == 5 and all(c["verdict"] in VERDICTS for c in claims["claims"])
    assert "GIO - random" in claims["claims"][0]["measured"]
    res = artifacts.read(r["select"].path("results")).to_pylist()
    assert {x["arm"] for x in res} == {"gio", "random", "full"}
    for seed in (0, 1):
        for k in (3, 5):
            g = [x for x in res if x["seed"] == seed and x["k"] == k]
            gio, rnd = (next(x for x in g if x["arm"] == a) for a in ("gio", "random"))
            assert gio["n"] == rnd["n"] > k  # equal size; GIO's stop gives fewer picks than the budget
            assert 0.0 <= gio["test_acc"] <= 1.0 and 0.0 <= gio["distractor_share"] <= 1.0
    sel = artifacts.read(r["select"].path("selections"))
    assert sel.schema.equals(SELECTION_SCHEMA)
    assert all(reason.startswith("gio(") for reason in set(sel.column("reason").to_pylist()))
    assert np.isfinite(sel.column("score").to_numpy()).all()
