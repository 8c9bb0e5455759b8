"""predictive_churn, psn_irt and uncertainty_measures end to end on their smoke profiles (stage shell, no Prefect)."""

import math

import pytest

from tasks.platform import artifacts
from tasks.platform.report import VERDICTS


def test_churn_smoke_reports_every_claim(smoke_results):
    r = smoke_results("predictive_churn")
    claims = artifacts.read(r["report"].path("claims"))["claims"]
    assert len(claims) == 4 and all(c["verdict"] in VERDICTS for c in claims)
    for ds in ("digits", "mnist1d", "breast_cancer"):
        t = artifacts.read(r[f"churn_{ds}"].path("churn")).to_pylist()
        for row in t:
            assert row["set_size"] >= 1  # the base is always in its own epsilon set
            assert 0 <= row["churn_retained"] <= 1 and 0 <= row["churn_plain"] <= 1
            assert math.isnan(row["auroc"]) or 0 <= row["auroc"] <= 1
            # the MPT comparison arm (on in smoke) and the negative-flip rates, NFR <= churn
            for rule in ("plain", "selected", "mpt"):
                assert 0 <= row[f"nfr_{rule}"] <= row[f"churn_{rule}"] <= 1 and 0 <= row[f"acc_{rule}"] <= 1
    text = artifacts.read(r["report"].path("report"))
    assert "Update rules vs the deployed model M0" in text and "NFR MPT - plain update" in text


def test_psn_irt_smoke_reports_every_claim(smoke_results):
    r = smoke_results("psn_irt")
    claims = artifacts.read(r["report"].path("claims"))["claims"]
    assert [c["verdict"] in VERDICTS for c in claims] == [True] * 4
    rec = artifacts.read(r["recover"].path("recovery")).to_pylist()
    assert {x["method"] for x in rec} == {"psn_irt", "2pl_map", "girth_2pl_mml"}
    models = artifacts.read(r["zoo_digits"].path("models"))
    assert models.num_rows == 7 * 2 * 2  # smoke zoo: 7 (family, capacity) x 2 seeds x 2 fractions


def test_uncertainty_measures_smoke_reports_every_claim(smoke_results):
    r = smoke_results("uncertainty_measures")
    claims = artifacts.read(r["report"].path("claims"))["claims"]
    assert len(claims) == 3 and all(c["verdict"] in VERDICTS for c in claims)
    scores = artifacts.read(r["measures_digits"].path("scores"))
    assert set(scores.column("measure").to_pylist()) == {"A", "B", "C", "D"}
    assert all(math.isnan(v) or 0 <= v <= 1 for v in scores.column("auroc").to_pylist())


def test_oko_smoke_reports_every_claim(smoke_results):
    r = smoke_results("oko")
    claims = artifacts.read(r["report"].path("claims"))["claims"]
    assert len(claims) == 3 and all(c["verdict"] in VERDICTS for c in claims)
    assert "identical parameter counts" in claims[2]["measured"]
    cells = artifacts.read(r["cells_digits"].path("cells"))
    assert set(cells.column("arm").to_pylist()) == {"ce", "ce_ls", "ce_ts", "oko_hard", "oko_soft"}


def test_churn_update_rules_table_and_note_on_hand_built_rows():
    import numpy as np

    from tasks.papers import predictive_churn as pc

    rows = []
    for d in pc.DATASETS:
        for s in (0, 1):
            rows.append({"dataset": d, "seed": s, "churn_plain": 0.10, "acc_plain": 0.9, "nfr_plain": 0.04 + 0.02 * s,
                         "churn_selected": 0.06, "acc_selected": 0.9, "nfr_selected": 0.03,
                         "churn_mpt": 0.08, "acc_mpt": 0.91, "nfr_mpt": 0.02 + 0.02 * s})
    col = lambda c: {(r["dataset"], r["seed"]): r[c] for r in rows if np.isfinite(r[c])}  # noqa: E731
    table, note = pc.update_rules(rows, col)
    got = {(r["dataset"], r["rule"]): r for r in table.to_pylist()}
    assert got[("digits", "mpt")]["nfr"] == pytest.approx(0.03) and got[("digits", "plain")]["nfr"] == pytest.approx(0.05)
    # NFR mpt - plain = -2 pts on every (dataset, seed); churn selected - mpt = -2 pts
    assert "NFR MPT - plain update -2 pts" in note and "churn selected member - MPT -2 pts" in note
    off = [{**r, "churn_mpt": float("nan"), "acc_mpt": float("nan"), "nfr_mpt": float("nan")} for r in rows]
    col_off = lambda c: {(r["dataset"], r["seed"]): r[c] for r in off if np.isfinite(r[c])}  # noqa: E731
    table, note = pc.update_rules(off, col_off)
    assert "off in this run" in note and np.isnan(table.to_pylist()[2]["churn"])
