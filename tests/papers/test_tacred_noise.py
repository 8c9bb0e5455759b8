"""tacred_noise end to end on the smoke profile: the record, the flags against it, the verdicts."""

import numpy as np
import pytest

from tasks.papers.tacred_noise import detection, f1_positive
from tasks.platform import artifacts
from tasks.platform.report import VERDICTS


def test_smoke_pipeline_flags_are_scored_against_the_exact_record(smoke_results):
    r = smoke_results("tacred_noise")
    record = artifacts.read(r["clean"].path("record"))
    flags = artifacts.read(r["clean"].path("flags"))
    train = artifacts.read(r["prepare"].path("train"))
    truth = dict(zip(train.column("id").to_pylist(), train.column("label").to_pylist()))
    for row in record.to_pylist():
        assert truth[row["id"]] == row["old"] != row["new"]
    noisy = {(x["seed"], x["id"]) for x in record.to_pylist()}
    for row in flags.to_pylist():
        assert row["noisy"] == ((row["seed"], row["id"]) in noisy)
    assert set(flags.column("flagger").to_pylist()) == {"IS", "ES", "ESP", "LD", "random"}
    det = detection(flags, record)
    assert all(0.0 <= v["precision"] <= 1.0 and 0.0 <= v["recall"] <= 1.0 for d in det.values() for v in d.values())
    claims = artifacts.read(r["report"].path("claims"))["claims"]
    assert len(claims) == 6 and all(c["verdict"] in VERDICTS for c in claims)
    assert claims[0]["verdict"] == "not testable at this scale" and "circular" in claims[0]["measured"]
    results = artifacts.read(r["clean"].path("results"))
    assert {"noisy", "clean", "IS-E", "IS-R", "ES-E", "ES-R", "ESP-E", "ESP-R", "LD-E", "random-E"} <= set(
        results.column("variant").to_pylist())


def test_f1_positive_by_hand():
    gold = np.array([0, 1, 2, 2, 0])
    pred = np.array([0, 1, 0, 1, 2])  # 1 correct positive of 3 positive predictions; 3 gold positives
    assert f1_positive(pred, gold, 0) == pytest.approx(2 * (1 / 3) * (1 / 3) / (2 / 3))
