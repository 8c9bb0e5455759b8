"""weak_selection end to end on the smoke profile (stage shell, no Prefect)."""

from tasks.platform import artifacts
from tasks.platform.report import VERDICTS


def test_smoke_pipeline_reports_every_claim(smoke_results):
    r = smoke_results("weak_selection")
    claims = artifacts.read(r["report"].path("claims"))
    assert len(claims["claims"]) == 4 and all(c["verdict"] in VERDICTS for c in claims["claims"])
    assert "IPW - unweighted" in claims["claims"][2]["measured"]
    res = artifacts.read(r["select"].path("results")).to_pylist()
    arms = {x["arm"] for x in res}
    assert arms == {"full", "random", "unc+1_unweighted", "unc+1_ipw", "unc-1_unweighted", "unc-1_ipw",
                    "influence_unweighted", "influence_ipw"}
    for x in res:
        assert x["n"] == (400 if x["arm"] == "full" else 100)
        assert x["lambda"] in (0.001, 0.1) and 0.0 <= x["test_error"] <= 1.0
    assert len(res) == 2 * 2 * (1 + 7)  # settings x seeds x (full + 7 subsampling arms)
