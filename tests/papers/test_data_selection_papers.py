"""gio, weak_selection and color_filter end to end on their smoke profiles (stage shell, no Prefect)."""

import numpy as np
import pytest

from tasks.data_selection.selection import SELECTION_SCHEMA
from tasks.platform import artifacts
from tasks.platform.report import VERDICTS


@pytest.mark.parametrize("paper, n_claims, first_measured", [
    ("gio", 5, "GIO - random"), ("weak_selection", 4, "full sample"), ("color_filter", 4, "- random (tau=1)"),
])
def test_smoke_report_has_every_claim_with_a_verdict(smoke_results, paper, n_claims, first_measured):
    claims = artifacts.read(smoke_results(paper)["report"].path("claims"))["claims"]
    assert len(claims) == n_claims and {c["verdict"] for c in claims} <= set(VERDICTS)
    assert first_measured in claims[0]["measured"]


def test_gio_arms_have_equal_sizes_and_selections_are_artifacts(smoke_results):
    r = smoke_results("gio")
    res = artifacts.read(r["select"].path("results")).to_pylist()
    assert {x["arm"] for x in res} == {"gio", "random", "full"}
    for seed in (0, 1):
        for k in (3, 5):
            g = [x for x in res if x["seed"] == seed and x["k"] == k]
            gio, rnd = (next(x for x in g if x["arm"] == a) for a in ("gio", "random"))
            assert gio["n"] == rnd["n"] > k
            assert 0.0 <= gio["test_acc"] <= 1.0 and 0.0 <= gio["distractor_share"] <= 1.0
    sel = artifacts.read(r["select"].path("selections"))
    assert sel.schema.equals(SELECTION_SCHEMA)
    assert all(reason.startswith("gio(") for reason in set(sel.column("reason").to_pylist()))
    assert np.isfinite(sel.column("score").to_numpy()).all()


def test_weak_selection_arms_budgets_and_lambda_grid(smoke_results):
    res = artifacts.read(smoke_results("weak_selection")["select"].path("results")).to_pylist()
    assert {x["arm"] for x in res} == {"full", "random", "unc+1_unweighted", "unc+1_ipw", "unc-1_unweighted",
                                       "unc-1_ipw", "influence_unweighted", "influence_ipw"}
    for x in res:
        assert x["n"] == (400 if x["arm"] == "full" else 100)
        assert x["lambda"] in (0.001, 0.1) and 0.0 <= x["test_error"] <= 1.0
    assert len(res) == 2 * 2 * (1 + 7)  # settings x seeds x (full + 7 subsampling arms)


def test_color_filter_keeps_eval_out_of_the_pool_and_trains_every_arm(smoke_results):
    r = smoke_results("color_filter")
    corpus = artifacts.read(r["corpus"].path("corpus"))
    texts, split = corpus.column("text").to_pylist(), corpus.column("split").to_pylist()
    assert not {t for t, s in zip(texts, split) if s == "eval"} & {t for t, s in zip(texts, split) if s == "pool"}
    scores = artifacts.read(r["score"].path("scores"))
    assert np.isfinite(scores.column("prior_loss").to_numpy()).all()
    res = artifacts.read(r["pretrain"].path("results")).to_pylist()
    assert {x["arm"] for x in res} == {"tau1", "tau4", "random_x2"}
    assert all(x["n"] == 20 for x in res if x["arm"].startswith("tau"))
    assert all(np.isfinite(x["eval_bpc"]) for x in res)
    sel = artifacts.read(r["pretrain"].path("selections"))
    assert sel.schema.equals(SELECTION_SCHEMA) and sel.num_rows == 2 * (20 + 20 + 40)
