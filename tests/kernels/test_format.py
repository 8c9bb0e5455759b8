"""Masks, bit packing and the compressed N:M format."""

from __future__ import annotations

import itertools

import pytest
import torch
from safetensors.torch import load_file, save_file

from kernels.nm import NMWeight, index_bits, magnitude_mask, pack_indices, unpack_indices
from tests.kernels.conftest import assert_really_nm

PATTERNS = [(1, 2), (2, 4), (1, 4), (2, 8), (1, 8), (16, 32), (12, 32), (8, 32), (4, 32)]


def brute_force_mask(w: torch.Tensor, n: int, m: int, v: int) -> torch.Tensor:
    """ASP-style: enumerate all C(m, n) patterns per group, take the argmax of summed |w|."""
    out_features, in_features = w.shape
    mask = torch.zeros_like(w, dtype=torch.bool)
    combos = list(itertools.combinations(range(m), n))  # lexicographic: ties -> lower offsets
    for r0 in range(0, out_features, v):
        rows = w[r0 : r0 + v].abs()
        for g in range(in_features // m):
            score = rows[:, g * m : (g + 1) * m].sum(0)
            best = max(combos, key=lambda c: (float(score[list(c)].sum()), [-i for i in c]))
            mask[r0 : r0 + v, [g * m + i for i in best]] = True
    return mask


def test_mask_hand_example():
    w = torch.tensor([[0.1, -3.0, 2.0, 0.5, 1.0, 1.0, 1.0, -1.0]])
    mask = magnitude_mask(w, 2, 4)
    assert mask.tolist() == [[False, True, True, False, True, True, False, False]]


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (3, 8)])
@pytest.mark.parametrize("v", [1, 3])
def test_mask_matches_brute_force(n, m, v):
    w = torch.randn(7, 2 * m, generator=torch.Generator().manual_seed(n * 10 + m + v))
    mask = magnitude_mask(w, n, m, v)
    assert torch.equal(mask, brute_force_mask(w, n, m, v))
    assert_really_nm(mask.float(), n, m, v)


def test_mask_ties_are_deterministic():
    w = torch.ones(4, 8)
    mask = magnitude_mask(w, 2, 4, v=2)
    assert mask[0].tolist() == [True, True, False, False] * 2
    assert torch.equal(mask, magnitude_mask(w.clone(), 2, 4, v=2))


@pytest.mark.parametrize(
    "shape,n,m,v,match",
    [
        ((4, 8), 5, 4, 1, "n <= m"),
        ((4, 8), 0, 4, 1, "n <= m"),
        ((4, 10), 2, 4, 1, "in_features=10"),
        ((4, 8), 2, 4, 0, "v=0"),
        ((8,), 2, 4, 1, "2-D"),
    ],
)
def test_mask_bad_input(shape, n, m, v, match):
    with pytest.raises(ValueError, match=match):
        magnitude_mask(torch.randn(*shape), n, m, v)


def test_mask_bad_types_and_values():
    with pytest.raises(TypeError, match="n must be an int"):
        magnitude_mask(torch.randn(4, 8), 2.0, 4)
    with pytest.raises(ValueError, match="NaN"):
        magnitude_mask(torch.tensor([[float("nan"), 1.0, 2.0, 3.0]]), 2, 4)


def test_pack_hand_example():
    # 1 = 01, 2 = 10, 3 = 11 at bit offsets 0, 2, 4 -> 0b00111001 = 57
    assert pack_indices(torch.tensor([1, 2, 3]), 2).tolist() == [57]


@pytest.mark.parametrize("bits", range(0, 9))
def test_pack_round_trip(bits):
    count = 37
    idx = torch.randint(0, 1 << bits, (count,), generator=torch.Generator().manual_seed(bits))
    packed = pack_indices(idx, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == (count * bits + 7) // 8
    assert torch.equal(unpack_indices(packed, bits, count), idx)


def test_pack_rejects_out_of_range():
    with pytest.raises(ValueError, match="indices must lie in"):
        pack_indices(torch.tensor([4]), 2)


@pytest.mark.parametrize("n,m", PATTERNS)
@pytest.mark.parametrize("v", [1, 32])
def test_round_trip(n, m, v):
    out_features, in_features = 40, 2 * m  # 40 rows: a partial last block when v = 32
    w = torch.randn(out_features, in_features, generator=torch.Generator().manual_seed(m * n))
    mask = magnitude_mask(w, n, m, v)
    nw = NMWeight.from_dense(w, mask, n=n, m=m, v=v)
    assert torch.equal(nw.to_dense(), w * mask)
    assert torch.equal(nw.mask(), mask)
    assert_really_nm(nw.to_dense(), n, m, v)
    again = NMWeight.from_dense(nw.to_dense(), n=n, m=m, v=v)  # re-compress a pruned weight
    assert torch.equal(again.to_dense(), nw.to_dense())


def test_nbytes_hand_computed():
    w = torch.randn(64, 32)
    # 2:4 v=1 fp32: values 64*16*4 = 4096 B; indices 64*8*2 = 1024 of 2 bits = 256 B
    assert NMWeight.from_dense(w, n=2, m=4).nbytes == 4096 + 256
    # v=32: 2 blocks * 8 groups * 2 = 32 indices of 2 bits = 8 B
    assert NMWeight.from_dense(w, n=2, m=4, v=32).nbytes == 4096 + 8
    # 1:8 v=1 bf16: values 64*4*2 = 512 B; 64*4 indices of 3 bits = 96 B
    assert NMWeight.from_dense(w.bfloat16(), n=1, m=8).nbytes == 512 + 96
    assert index_bits(32) == 5 and index_bits(2) == 1 and index_bits(1) == 0


def test_from_dense_rejects_non_nm_mask():
    w = torch.randn(4, 8)
    mask = magnitude_mask(w, 2, 4)
    mask[1, 0] = ~mask[1, 0]
    with pytest.raises(ValueError, match="row 1, group 0"):
        NMWeight.from_dense(w, mask, n=2, m=4)
    with pytest.raises(ValueError, match="mask shape"):
        NMWeight.from_dense(w, mask[:2], n=2, m=4)
    with pytest.raises(TypeError, match="bool"):
        NMWeight.from_dense(w, mask.float(), n=2, m=4)
    with pytest.raises(ValueError, match="n <= m"):
        NMWeight.from_dense(w, n=5, m=4)


def test_from_dense_rejects_mixed_block_explicitly():
    w = torch.randn(2, 4)
    mask = torch.tensor([[True, True, False, False], [False, False, True, True]])
    with pytest.raises(ValueError, match="not vector-wise with v=2: row 1"):
        NMWeight.from_dense(w, mask, n=2, m=4, v=2)


def test_state_dict_safetensors_round_trip(tmp_path):
    nw = NMWeight.from_dense(torch.randn(33, 16), n=1, m=8, v=32)
    path = tmp_path / "w.safetensors"
    save_file(nw.to_state_dict("fc1."), str(path))
    back = NMWeight.from_state_dict(load_file(str(path)), "fc1.")
    assert (back.n, back.m, back.v, back.shape) == (1, 8, 32, (33, 16))
    assert torch.equal(back.to_dense(), nw.to_dense())
    sd = nw.to_state_dict()
    del sd["indices"]
    with pytest.raises(KeyError, match="indices"):
        NMWeight.from_state_dict(sd)
    sd = nw.to_state_dict()
    sd["indices"] = sd["indices"][:-1]
    with pytest.raises(ValueError, match="indices must be uint8"):
        NMWeight.from_state_dict(sd)


def test_to_dense_is_differentiable_in_values():
    nw = NMWeight.from_dense(torch.randn(4, 8), n=2, m=4)
    values = nw.values.clone().requires_grad_(True)
    dense = nw.with_values(values).to_dense()
    (dense * torch.arange(32.0).view(4, 8)).sum().backward()
    expected = torch.arange(32.0).view(4, 8)[nw.mask()].view(4, 4)
    assert torch.equal(values.grad, expected)
