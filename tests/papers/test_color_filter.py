"""color_filter end to end on the smoke profile (stage shell, no Prefect)."""

import numpy as np

from tasks.data_selection.selection import SELECTION_SCHEMA
from tasks.platform import artifacts
from tasks.platform.report import VERDICTS


def test_smoke_pipeline_reports_every_claim(smoke_results):
    r = smoke_results("color_filter")
    claims = artifacts.read(r["report"].path("claims"))
    assert len(claims["claims"]) == 4 and all(c["verdict"] in VERDICTS for c in claims["claims"])
    corpus = artifacts.read(r["corpus"].path("corpus"))
    texts = corpus.column("text").to_pylist()
    split = corpus.column("split").to_pylist()
    # the target evaluation passages are never in the pool
    assert not {t for t, s in zip(texts, split) if s == "eval"} & {t for t, s in zip(texts, split) if s == "pool"}
    scores = artifacts.read(r["score"].path("scores"))
    assert np.isfinite(scores.column("prior_loss").to_numpy()).all()
    res = artifacts.read(r["pretrain"].path("results")).to_pylist()
    assert {x["arm"] for x in res} == {"tau1", "tau4", "random_x2"}
    assert all(x["n"] == 20 for x in res if x["arm"].startswith("tau")) and all(np.isfinite(x["eval_bpc"]) for x in res)
    sel = artifacts.read(r["pretrain"].path("selections"))
    assert sel.schema.equals(SELECTION_SCHEMA) and sel.num_rows == 2 * (20 + 20 + 40)
