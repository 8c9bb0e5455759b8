"""quant_matmul: every impl against the dequantize-then-matmul definition, on shapes that are not
multiples of the group, the row tile (4) or the vector width (16/32), plus the shared bad-input errors
and the dispatch rules."""

from __future__ import annotations

import pytest
import torch

from kernels.native_build import has_avx512
from kernels.quant import NMQuantWeight, QuantWeight, impls, native_amx, quant_matmul, select_impl
from tests.kernels.conftest import random_nm

IMPLS = sorted(n for n, i in impls().items() if i.exact)  # inexact (int8-activation) impls: test_quant_a8.py
ALL_IMPLS = sorted(impls())
# (bits, group, symmetric, in_features): per-channel widths not multiples of 16, groups not
# multiples of 16/32, widths not multiples of the 1024-code k-block
FORMATS = [(4, 32, True, 96), (4, 32, False, 1120), (4, 128, True, 384), (4, 128, False, 1152),
           (8, None, True, 100), (8, None, False, 2100), (8, 32, True, 160), (4, 6, True, 42),
           (8, 7, False, 49), (4, 48, True, 96)]
BATCHES = [(1,), (5,), (2, 3), (17,), (64,)]


def _close(y: torch.Tensor, w_dense: torch.Tensor, x: torch.Tensor) -> None:
    """fp32 result vs an fp64 matmul of the same dequantized weight (sum-order tolerance)."""
    expect = (x.double() @ w_dense.double().T)
    bound = 1e-5 * (x.double().abs() @ w_dense.double().abs().T) + 1e-6
    assert y.dtype == x.dtype and y.shape == expect.shape
    err = (y.double() - expect).abs()
    assert bool((err <= bound).all()), f"max err {err.max().item():.3g} vs bound {bound.max().item():.3g}"


def _available(name: str) -> None:
    if not impls()[name].available():
        pytest.skip(f"{name} impl not available here")


def _handles(name: str, w) -> bool:
    """False where an impl documents that it does not take this weight (native_amx: dense only, groups that
    are multiples of 32 or one group per row); it then raises instead (test_native_amx_limits_and_dispatch)."""
    return name != "native_amx" or native_amx.handles(w)


@pytest.mark.parametrize("name", IMPLS)
@pytest.mark.parametrize("bits,group,sym,in_f", FORMATS)
def test_dense_quant_parity(name, bits, group, sym, in_f):
    _available(name)
    g = torch.Generator().manual_seed(in_f + bits)
    w = torch.randn(37, in_f, generator=g)
    q = QuantWeight.quantize(w, bits=bits, group=group, symmetric=sym)
    if not _handles(name, q):
        pytest.skip(f"{name} does not take group={group} at width {in_f}")
    dense = q.dequantize()
    for lead in BATCHES:
        x = torch.randn(*lead, in_f, generator=g)
        _close(quant_matmul(q, x, impl=name), dense, x)


@pytest.mark.parametrize("name", IMPLS)
@pytest.mark.parametrize("n,m,v", [(2, 4, 1), (1, 2, 1), (2, 4, 32), (1, 2, 8), (1, 8, 1), (4, 8, 4), (3, 4, 1)])
@pytest.mark.parametrize("bits,sym,group", [(4, True, 16), (4, True, 32), (8, False, None)])
def test_nm_quant_parity(name, n, m, v, bits, sym, group):
    """group 32 (int4): the fused batch-1 path and the deinterleaved unpack; 1:2 / 2:4 at every v decode
    the packed indices in registers on AVX-512."""
    _available(name)
    if name == "native_amx":
        pytest.skip("native_amx takes dense weights only")
    in_f = 8 * 48  # 384: K' = 192 (2:4), 48 (1:8), 288 (3:4)
    if group and (in_f // m * n) % group:
        pytest.skip(f"K' = {in_f // m * n} is not a multiple of group {group}")
    nw = random_nm(37, in_f, n, m, v, seed=n * 10 + m)  # 37 rows: partial v=32 block and row tile
    nq = NMQuantWeight.from_nm(nw, bits=bits, group=group, symmetric=sym)
    dense = nq.dequantize()
    assert not bool(dense[~nw.mask()].any())
    g = torch.Generator().manual_seed(1)
    for lead in BATCHES:
        x = torch.randn(*lead, in_f, generator=g)
        _close(quant_matmul(nq, x, impl=name), dense, x)


def test_nm_quant_unaligned_packed_rows():
    """1:2 / 2:4 v=1 rows whose packed indices are not byte aligned (the native kernel then gathers
    with uint8 offsets instead of decoding the packed bits)."""
    for w in (random_nm(5, 36, 2, 4, 1), random_nm(5, 42, 1, 2, 1)):  # K' = 18 (36 bits), 21 bits
        nq = NMQuantWeight.from_nm(w, bits=8)
        x = torch.randn(3, w.shape[1])
        for name in IMPLS:
            if impls()[name].available() and name != "native_amx":  # dense only
                _close(quant_matmul(nq, x, impl=name), nq.dequantize(), x)


@pytest.mark.parametrize("name", ALL_IMPLS)
def test_same_errors_from_every_impl(name):
    _available(name)
    q = QuantWeight.quantize(torch.randn(8, 64), bits=4, group=32)
    x = torch.randn(2, 64)
    bad_bits = QuantWeight.quantize(torch.randn(8, 64), bits=4, group=32)
    bad_bits.bits = 3  # corrupted after construction: every impl re-validates
    with pytest.raises(ValueError, match="bits must be one of"):
        impls()[name].fn(bad_bits, x)
    bad_group = QuantWeight.quantize(torch.randn(8, 64), bits=4, group=32)
    bad_group.group = 24
    with pytest.raises(ValueError, match="group=24 does not divide the width in_features=64"):
        impls()[name].fn(bad_group, x)
    bad_zero = QuantWeight.quantize(torch.randn(8, 64), bits=4, group=32, symmetric=False)
    bad_zero.zeros = bad_zero.zeros[:, :1]
    with pytest.raises(ValueError, match="zeros must be uint8 of shape \\(8, 2\\)"):
        impls()[name].fn(bad_zero, x)
    bad_codes = QuantWeight.quantize(torch.randn(8, 64), bits=4, group=32)
    bad_codes.codes = bad_codes.codes.to(torch.int32)
    with pytest.raises(ValueError, match="codes must be uint8"):
        impls()[name].fn(bad_codes, x)
    with pytest.raises(ValueError, match="in_features=64"):
        impls()[name].fn(q, torch.randn(2, 63))
    with pytest.raises(TypeError, match="floating-point"):
        impls()[name].fn(q, torch.ones(2, 64, dtype=torch.int64))
    with pytest.raises(TypeError, match="QuantWeight"):
        impls()[name].fn(q.dequantize(), x)


def test_native_limits():
    native = impls()["native"]
    if not native.available():
        pytest.skip("native impl not built")
    q = QuantWeight.quantize(torch.randn(8, 64), bits=8)
    with pytest.raises(TypeError, match="fp32"):
        native.fn(q, torch.randn(2, 64, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="at most 64 rows"):
        native.fn(q, torch.randn(65, 64))
    assert select_impl(q, torch.randn(65, 64)).name == "reference"
    # auto takes it only where its vector paths are built (AVX-512); the scalar fallback loses to the reference;
    # from 2 rows an AMX CPU takes native_amx instead (test_native_amx_limits_and_dispatch)
    assert select_impl(q, torch.randn(1, 64)).name == ("native" if has_avx512() else "reference")
    amx = impls()["native_amx"].available()
    assert select_impl(q, torch.randn(16, 64)).name == ("native_amx" if amx else "native" if has_avx512() else "reference")
    assert select_impl(q, torch.randn(16, 64), impl="native").name == "native"


def test_reference_handles_other_dtypes_and_env(monkeypatch):
    q = QuantWeight.quantize(torch.randn(8, 64), bits=4, group=32)
    xb = torch.randn(3, 64, dtype=torch.bfloat16)
    assert select_impl(q, xb).name == "reference"
    assert quant_matmul(q, xb).dtype == torch.bfloat16
    monkeypatch.setenv("REPROLAB_KERNEL", "reference")
    assert select_impl(q, torch.randn(2, 64), impl="native").name == "reference"
    monkeypatch.setenv("REPROLAB_KERNEL", "cpu")  # an N:M-only name is ignored here
    assert select_impl(q, torch.randn(2, 64)).name in ("native", "native_amx", "reference")


def test_grad_wrt_x_goes_through_the_reference():
    q = QuantWeight.quantize(torch.randn(8, 64), bits=4, group=32)
    x = torch.randn(2, 64, requires_grad=True)
    quant_matmul(q, x).sum().backward()
    torch.testing.assert_close(x.grad, q.dequantize().sum(0).expand(2, 64))


@pytest.mark.parametrize("name", IMPLS)
def test_fp32_scales_empty_and_strided_inputs(name):
    _available(name)
    g = torch.Generator().manual_seed(3)
    for bits, group in ((4, 32), (8, 64)):
        q = QuantWeight.quantize(torch.randn(9, 128, generator=g), bits=bits, group=group,
                                 symmetric=False, scale_dtype=torch.float32)
        for batch in (1, 6):
            x = torch.randn(128, batch, generator=g).T  # non-contiguous (batch, 128)
            _close(quant_matmul(q, x, impl=name), q.dequantize(), x)
        assert quant_matmul(q, torch.randn(0, 128), impl=name).shape == (0, 9)


AMX_FORMATS = [(4, 32, True, 96), (4, 32, False, 1120), (4, 128, True, 384), (4, 64, False, 192),
               (8, None, True, 100), (8, None, False, 2100), (8, 32, True, 160), (4, None, False, 42)]


@pytest.mark.parametrize("bits,group,sym,in_f", AMX_FORMATS)
def test_native_amx_batches(bits, group, sym, in_f):
    """Both AMX layouts: batch <= 5 packs the three activation parts into one B tile, larger batches use
    three B tiles per chunk of 16 rows (6, 16, 17, 33: partial and several chunks); 37 weight rows: a partial
    64-row block and 16-row tile; per-channel widths 100, 2100 and 42 (int4): a zero-padded last step."""
    _available("native_amx")
    g = torch.Generator().manual_seed(in_f * 3 + bits)
    q = QuantWeight.quantize(torch.randn(37, in_f, generator=g), bits=bits, group=group, symmetric=sym)
    dense = q.dequantize()
    for batch in (1, 2, 5, 6, 16, 17, 33):
        x = torch.randn(batch, in_f, generator=g) * 10 ** torch.randint(-6, 6, (batch, 1), generator=g)
        _close(quant_matmul(q, x, impl="native_amx"), dense, x)


@pytest.mark.parametrize("bits,code", [(4, 1), (4, -8), (8, 1), (8, -128)])
def test_native_amx_uses_all_three_activation_parts(bits, code):
    """One non-zero code per row, a power of two: y = s * code * x is a single exact product up to fp32
    rounding. The kernel rounds a few times (per part in the packed layout, batch <= 5; the group FMA), so y
    must be within 8 ulps (2^-21 relative) of it. Dropping the low bf16 part of x (or rounding x to bf16)
    errs by up to 2^-16 relative and fails this."""
    _available("native_amx")
    g = torch.Generator().manual_seed(bits - code)
    out_f, in_f = 20, 64
    cols = torch.randint(0, in_f, (out_f,), generator=g)
    codes = torch.zeros(out_f, in_f, dtype=torch.int64)
    codes[torch.arange(out_f), cols] = code
    scales = torch.rand(out_f, 1 if bits == 8 else in_f // 32, generator=g) + 0.5
    q = QuantWeight.from_codes(codes, scales, bits=bits, group=in_f if bits == 8 else 32,
                               scale_dtype=torch.float32)
    s = q.scales.double().repeat_interleave(q.group, dim=1).gather(1, cols[:, None])[:, 0]  # (out,)
    for batch in (3, 16):  # packed and split layouts
        x = torch.randn(batch, in_f, generator=g) * (1 + torch.rand(batch, in_f, generator=g))  # 24-bit significands
        expect = x.double()[:, cols] * (s * code)
        rel = ((quant_matmul(q, x, impl="native_amx").double() - expect).abs() / expect.abs()).max().item()
        assert rel <= 2.0 ** -21, f"relative error {rel:.3g} (batch {batch})"
        # the same check catches a kernel that loses the low part: x with its low 8 significand bits cleared
        x_hi_mid = (x.view(torch.int32) & ~0xFF).view(torch.float32)
        assert ((x_hi_mid.double()[:, cols] * (s * code) - expect).abs() / expect.abs()).max().item() > 2.0 ** -21


def test_native_amx_without_amx_is_never_selected(monkeypatch):
    """A CPU without AMX (or a refused permission): the library is None, so the impl is unavailable,
    supports nothing, auto never picks it and naming it raises."""
    monkeypatch.setattr(native_amx, "_library", lambda: None)
    amx = impls()["native_amx"]
    q = QuantWeight.quantize(torch.randn(8, 64), bits=4, group=32)
    assert not amx.available() and not amx.supports(q, torch.randn(16, 64))
    assert select_impl(q, torch.randn(16, 64)).name != "native_amx"
    with pytest.raises(RuntimeError, match="not available"):
        select_impl(q, torch.randn(16, 64), impl="native_amx")
    with pytest.raises(RuntimeError, match="not available"):
        amx.fn(q, torch.randn(2, 64))


def test_native_amx_limits_and_dispatch(monkeypatch):
    amx = impls()["native_amx"]
    q = QuantWeight.quantize(torch.randn(8, 64), bits=4, group=32)
    assert not amx.supports(QuantWeight.quantize(torch.randn(8, 96), bits=4, group=48), torch.randn(16, 96))
    assert not amx.supports(q, torch.randn(16, 64, dtype=torch.bfloat16))
    assert not amx.supports(q, torch.randn(65, 64)) and not amx.supports(q, torch.randn(1, 64))
    _available("native_amx")  # the rest needs the kernel
    assert amx.supports(q, torch.randn(2, 64))  # from 2 rows (measured); batch 1 stays on native
    q8 = QuantWeight.quantize(torch.randn(8, 64), bits=8)
    assert not amx.supports(q8, torch.randn(1, 64)) and amx.supports(q8, torch.randn(2, 3, 64))
    with pytest.raises(ValueError, match="group % 32 == 0"):
        amx.fn(QuantWeight.quantize(torch.randn(8, 96), bits=4, group=48), torch.randn(2, 96))
    with pytest.raises(TypeError, match="dense QuantWeight"):
        amx.fn(NMQuantWeight.from_nm(random_nm(8, 64, 2, 4, 1), bits=8), torch.randn(2, 64))
    with pytest.raises(TypeError, match="fp32"):
        amx.fn(q, torch.randn(2, 64, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="at most 64 rows"):
        amx.fn(q, torch.randn(65, 64))
    assert select_impl(q, torch.randn(16, 64)).name == "native_amx"
    assert select_impl(q, torch.randn(1, 64)).name == "native"
    assert select_impl(q, torch.randn(16, 64, dtype=torch.float64)).name == "reference"
    monkeypatch.setenv("REPROLAB_KERNEL", "native_amx")  # an exact impl: the switch may force it
    assert select_impl(q, torch.randn(1, 64)).name == "native_amx"
    monkeypatch.setenv("REPROLAB_KERNEL", "reference")
    assert select_impl(q, torch.randn(16, 64), impl="native_amx").name == "reference"


def test_bound_auto_call_follows_the_row_count():
    """bind_matmul(impl="auto") on 16 rows, then called with 1 row: the same impl as quant_matmul chooses
    for 1 row (native, not native_amx on an AMX CPU), so the results are identical."""
    from kernels.quant import bind_matmul

    q = QuantWeight.quantize(torch.randn(40, 256), bits=4, group=32)
    call = bind_matmul(q, torch.randn(16, 256))
    if call is None:
        pytest.skip("no native binder here")
    for rows in (1, 2, 16, 64):
        x = torch.randn(rows, 256)
        assert torch.equal(call(x), quant_matmul(q, x)), rows
