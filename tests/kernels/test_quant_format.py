"""Low-bit formats: packing, round trips, exact byte sizes, conversion from codes, bad input."""

from __future__ import annotations

import pytest
import torch

from kernels.nm import NMWeight
from kernels.quant import NMQuantWeight, QuantWeight, expected_nbytes, pack_codes, unpack_codes


def test_int4_packing_by_hand():
    u = torch.tensor([[1, 2, 15, 0]])
    packed = pack_codes(u, 4)
    assert packed.tolist() == [[0x21, 0x0F]]  # code 2j low nibble, 2j+1 high nibble
    assert unpack_codes(packed, 4).tolist() == u.tolist()


@pytest.mark.parametrize("bits", [4, 8])
def test_pack_round_trip(bits):
    u = torch.randint(0, 1 << bits, (5, 12))
    assert torch.equal(unpack_codes(pack_codes(u, bits), bits).long(), u)


@pytest.mark.parametrize("bits,group,sym", [(4, 32, True), (4, 32, False), (4, 128, True),
                                            (4, 128, False), (8, None, True), (8, None, False),
                                            (8, 32, False)])
def test_from_codes_round_trip_and_dequantize(bits, group, sym):
    g = torch.Generator().manual_seed(bits + (group or 0))
    out_f, in_f = 6, 256
    group_ = in_f if group is None else group
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if sym else (0, (1 << bits) - 1)
    codes = torch.randint(lo, hi + 1, (out_f, in_f), generator=g)
    scales = torch.rand(out_f, in_f // group_, generator=g) + 0.1
    zeros = None if sym else torch.randint(0, 1 << bits, (out_f, in_f // group_), generator=g)
    q = QuantWeight.from_codes(codes, scales, zeros, bits=bits, group=group_, scale_dtype=torch.float32)
    back, s, z = q.to_codes()
    assert torch.equal(back.long(), codes)
    assert torch.equal(s, scales)
    assert (z is None) == sym and (sym or torch.equal(z.long(), zeros))
    zz = 0 if sym else zeros.repeat_interleave(group_, dim=1)
    expect = (codes - zz).float() * scales.repeat_interleave(group_, dim=1)
    torch.testing.assert_close(q.dequantize(), expect, rtol=0, atol=0)
    assert q.nbytes == expected_nbytes((out_f, in_f), bits, group_, symmetric=sym, scale_bytes=4)


def test_nbytes_by_hand():
    q = QuantWeight.quantize(torch.randn(40, 352), bits=4, group=32)  # sym, fp16 scales
    assert q.nbytes == 40 * 352 // 2 + 40 * 11 * 2  # 4.5 bits per weight
    q8 = QuantWeight.quantize(torch.randn(64, 100), bits=8)  # per-channel
    assert q8.nbytes == 64 * 100 + 64 * 2
    qa = QuantWeight.quantize(torch.randn(8, 256), bits=4, group=128, symmetric=False)
    assert qa.nbytes == 8 * 128 + 8 * 2 * 2 + 8 * 2  # codes + fp16 scales + uint8 zeros


@pytest.mark.parametrize("bits,sym", [(4, True), (4, False), (8, True), (8, False)])
def test_rtn_error_is_within_half_a_step(bits, sym):
    w = torch.randn(16, 64)
    q = QuantWeight.quantize(w, bits=bits, group=32, symmetric=sym, scale_dtype=torch.float32)
    step = q.scales.repeat_interleave(32, dim=1)
    assert bool(((q.dequantize() - w).abs() <= step / 2 + 1e-6).all())


def test_state_dict_round_trip_and_safetensors(tmp_path):
    from safetensors.torch import load_file, save_file

    q = QuantWeight.quantize(torch.randn(8, 64), bits=4, group=32, symmetric=False)
    path = tmp_path / "q.safetensors"
    save_file(q.to_state_dict("fc."), str(path))
    back = QuantWeight.from_state_dict(load_file(str(path)), "fc.")
    assert torch.equal(back.dequantize(), q.dequantize())
    with pytest.raises(KeyError, match="fc.scales"):
        QuantWeight.from_state_dict({"fc.codes": q.codes}, "fc.")


def test_nm_quant_round_trip_and_bytes():
    w = torch.randn(8, 64)
    nw = NMWeight.from_dense(w, n=2, m=4, v=1)
    nq = NMQuantWeight.from_nm(nw, bits=4, group=16, scale_dtype=torch.float32)
    dense = nq.dequantize()
    assert not bool(dense[~nw.mask()].any())  # pruned positions stay zero
    assert bool(((dense - nw.to_dense()).abs() <= nq.q.scales.max() / 2 + 1e-6).all())
    assert nq.nbytes == 8 * 32 // 2 + 8 * 2 * 4 + nw.indices.numel()
    sd = nq.to_state_dict("l.")
    back = NMQuantWeight.from_state_dict(sd, "l.")
    assert torch.equal(back.dequantize(), dense)
    # conversion from codes keeps the pattern and the codes exactly
    codes, scales, _ = nq.q.to_codes()
    again = NMQuantWeight.from_codes(nw, codes, scales, bits=4, group=16, scale_dtype=torch.float32)
    assert torch.equal(again.dequantize(), dense)


@pytest.mark.parametrize("kwargs,match", [
    (dict(bits=3, group=32), "bits must be one of"),
    (dict(bits=4, group=48), "group=48 does not divide the width in_features=64"),
    (dict(bits=4, group=0), "group must be a positive int"),
    (dict(bits=4, group=1), "group must be even"),
])
def test_bad_bits_and_groups(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuantWeight.quantize(torch.randn(4, 64), **kwargs)
    with pytest.raises(ValueError, match=match):
        QuantWeight.from_codes(torch.zeros(4, 64), torch.ones(4, 1), **kwargs)


@pytest.mark.parametrize("bits,codes,zeros,match", [
    (4, 8, None, "code 8 out of range \\[-8, 7\\]"),
    (4, -9, None, "code -9 out of range"),
    (4, 16, 0, "code 16 out of range \\[0, 15\\]"),
    (8, 128, None, "code 128 out of range \\[-128, 127\\]"),
    (8, 3, 256, "zero point 256 out of range"),
    (4, 0.5, None, "codes must be integer-valued"),
])
def test_codes_out_of_range(bits, codes, zeros, match):
    c = torch.zeros(2, 32)
    c[1, 3] = codes
    z = None if zeros is None else torch.full((2, 1), zeros)
    with pytest.raises(ValueError, match=match):
        QuantWeight.from_codes(c, torch.ones(2, 1), z, bits=bits, group=32)


def test_bad_shapes_name_the_field():
    with pytest.raises(ValueError, match="scales must have shape \\(2, 2\\)"):
        QuantWeight.from_codes(torch.zeros(2, 64), torch.ones(2, 3), bits=4, group=32)
    q = QuantWeight.quantize(torch.randn(2, 64), bits=4, group=32)
    with pytest.raises(ValueError, match="codes must be uint8 of shape \\(2, 32\\)"):
        QuantWeight(codes=q.codes[:, :8], scales=q.scales, zeros=None, bits=4, group=32, shape=(2, 64))
    with pytest.raises(ValueError, match="zero point 16 out of range"):
        QuantWeight(codes=q.codes, scales=q.scales, zeros=torch.full((2, 2), 16, dtype=torch.uint8),
                    bits=4, group=32, shape=(2, 64))
    nw = NMWeight.from_dense(torch.randn(4, 64), n=2, m=4)
    with pytest.raises(ValueError, match="group=24 does not divide the width in_features=32"):
        NMQuantWeight.from_nm(nw, bits=4, group=24)
