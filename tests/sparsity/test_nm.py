"""Magnitude N:M pruning, fixed-mask fine-tuning and the nm_sparsity evaluation core."""

import pytest
import torch

from kernels.nm import NMWeight
from models import ModelSpec
from tasks.train import unpack_groups
from tasks.data_prep import DataParams, prepare
from tasks.sparsity import nm
from tasks.train import OptimParams, TrainParams, train, unpack_seeds


@pytest.fixture(scope="module")
def tiny():
    data = prepare(DataParams(dataset="digits", max_samples=200))
    tp = TrainParams(model=ModelSpec(hidden=(32, 16)), seeds=(0, 1), max_epochs=2, lr=5e-3)
    dense = train(tp, train=data["train"], val=data["val"])["weights"]
    return data, tp, dense


def test_parse_pattern():
    assert nm.parse_pattern(" 2:4 ") == (2, 4)
    with pytest.raises(ValueError, match="'5:4': need 0 < n <= m, got n=5, m=4"):
        nm.parse_pattern("5:4")
    with pytest.raises(ValueError, match="m must be <= 256"):  # the kernel's rule (kernels.nm.validate_nm)
        nm.parse_pattern("2:512")
    with pytest.raises(ValueError, match="form 'N:M'"):
        nm.parse_pattern("2/4")


def test_prune_keeps_exactly_n_of_m_and_the_largest(tiny):
    data, tp, dense = tiny
    pp = nm.PruneParams(patterns=("2:4", "1:8"), vectors=(1, 8))
    out = nm.prune({"prune": pp, "train": tp}, dense=dense, train=data["train"])
    variants = unpack_groups(out["weights"])
    assert set(variants) == {"2:4_v1", "2:4_v8", "1:8_v1", "1:8_v8"}
    orig = unpack_seeds(dense)
    for var, seeds in variants.items():
        n, m, v = nm.parse_variant(var)
        for seed, sd in seeds.items():
            for layer in ("features.0", "features.2"):
                w = sd[f"{layer}.weight"]
                groups = (w != 0).view(w.shape[0], -1, m).sum(-1)
                assert bool((groups == n).all()), f"{var}/{seed}/{layer} is not {n}:{m}"
                if v == 1:  # kept entries are the n largest |w| of each group
                    o = orig[seed][f"{layer}.weight"].abs().view(w.shape[0], -1, m)
                    kept = o.masked_fill((w == 0).view_as(o), float("inf")).min(-1).values
                    dropped = o.masked_fill((w != 0).view_as(o), -1.0).max(-1).values
                    assert bool((kept >= dropped).all())
                else:  # v rows share one pattern
                    mask = (w != 0).view(-1, v, w.shape[1])
                    assert bool((mask == mask[:, :1]).all())
                nmw = NMWeight.from_state_dict(out["compressed"], f"{var}/{seed}.{layer}.")
                assert torch.equal(nmw.to_dense(), w)
            assert torch.equal(sd["head.weight"], orig[seed]["head.weight"])  # head left dense


def test_finetune_holds_mask_and_changes_kept_weights(tiny):
    data, tp, dense = tiny
    pp = nm.PruneParams(patterns=("1:4",), vectors=(1,))
    pruned = nm.prune({"prune": pp, "train": tp}, dense=dense, train=data["train"])["weights"]
    ft = nm.finetune({"finetune": OptimParams(max_epochs=1), "train": tp}, pruned=pruned,
                     train=data["train"], val=data["val"])["weights"]
    for key, w in pruned.items():
        if key.endswith("features.0.weight"):
            assert torch.equal(ft[key] == 0, w == 0)
            assert not torch.equal(ft[key], w)


def test_evaluate_reports_bytes_and_parity(tiny):
    data, tp, dense = tiny
    pp = nm.PruneParams(patterns=("2:4",), vectors=(1,))
    pr = nm.prune({"prune": pp, "train": tp}, dense=dense, train=data["train"])
    out = nm.evaluate(tp, dense=dense, pruned=pr["weights"], finetuned=pr["weights"],
                      compressed=pr["compressed"], test=data["test"])
    rows = out["results"].to_pylist()
    dense_row = next(r for r in rows if r["model"] == "dense")
    sparse_row = next(r for r in rows if r["model"] == "pruned/2:4_v1")
    assert sparse_row["weight_bytes"] < dense_row["weight_bytes"]
    assert sparse_row["params_nonzero"] < dense_row["params_nonzero"]
    assert all(0 <= r["acc"] <= 1 and r["matmul_max_abs_err"] < 1e-4 for r in rows)
    assert out["predictions"].num_rows == len(rows) * data["test"].num_rows


def test_width_check_names_layer():
    with pytest.raises(ValueError, match="M=8 does not divide the input width 20"):
        nm.check_widths(nm.PruneParams(patterns=("1:8",)), [64, 20, 16], "here")
