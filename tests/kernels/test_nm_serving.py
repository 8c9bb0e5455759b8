"""The nm_sparsity ``serve`` core: NMLinear latency/memory vs dense and accuracy at v = 1 vs v = 32."""

import pytest
import torch

from models import ModelSpec
from tasks.data_prep import DataParams, prepare
from tasks.sparsity import nm
from tasks.sparsity.serving import SERVE_SCHEMA, ServeParams, serve
from tasks.train import OptimParams, TrainParams, train


@pytest.fixture(scope="module")
def finetuned():
    data = prepare(DataParams(dataset="digits", max_samples=200))
    tp = TrainParams(model=ModelSpec(hidden=(32, 16)), seeds=(0, 1), max_epochs=2, lr=5e-3)
    dense = train(tp, train=data["train"], val=data["val"])["weights"]
    pp = nm.PruneParams(patterns=("2:4", "1:8"), vectors=(1, 32))
    pruned = nm.prune({"prune": pp, "train": tp}, dense=dense, train=data["train"])["weights"]
    ft = nm.finetune({"finetune": OptimParams(max_epochs=1), "train": tp}, pruned=pruned,
                     train=data["train"], val=data["val"])["weights"]
    return data, tp, pp, ft


def test_serve_matches_masked_dense_and_reports(finetuned):
    data, tp, pp, ft = finetuned
    sp = ServeParams(batch_sizes=(1, 0), repeats=2)
    out = serve({"prune": pp, "train": tp, "serve": sp}, finetuned=ft, test=data["test"])
    table = out["results"]
    assert table.schema.equals(SERVE_SCHEMA)
    assert table.num_rows == 4 * 2 * 2  # variants x seeds x batch sizes
    rows = table.to_pylist()
    for r in rows:
        assert r["max_abs_logit_diff"] < 1e-4
        assert r["acc_nm"] == r["acc_masked_dense"]
        assert r["nm_bytes"] < r["dense_bytes"]
        assert r["dense_ms"] > 0 and r["nm_ms"] > 0
    assert {r["batch"] for r in rows} == {1, data["test"].num_rows}
    metrics = out["metrics"]
    assert set(metrics["v1_vs_v32"]) == {"2:4", "1:8"}
    gap = metrics["v1_vs_v32"]["2:4"]
    assert gap["gap_pts"] == pytest.approx(100 * (gap["acc_v1"] - gap["acc_v32"]))
    # 1:8 stores fewer bytes than 2:4 (values 1/8 vs 1/2 of the pruned layers)
    assert metrics["variants"]["1:8_v1"]["bytes_ratio"] > metrics["variants"]["2:4_v1"]["bytes_ratio"]


def test_serve_does_not_mutate_inputs(finetuned):
    data, tp, pp, ft = finetuned
    before = {k: t.clone() for k, t in ft.items()}
    serve({"prune": pp, "train": tp, "serve": ServeParams(batch_sizes=(1,), repeats=1)},
          finetuned=ft, test=data["test"])
    assert all(torch.equal(before[k], ft[k]) for k in ft)
