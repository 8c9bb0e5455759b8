"""The int8-activation impl (``native_a8``, W4A8 / W8A8) against its own readable reference
(fake-quantized activations x dequantized weight), on shapes that are not multiples of the group,
the row tile or the 32-code vector chunk; plus the dispatch rule that keeps it out of ``auto``."""

from __future__ import annotations

import pytest
import torch

from kernels.quant import NMQuantWeight, QuantWeight, impls, quant_matmul, select_impl
from kernels.quant.native_a8 import quant_matmul_a8_reference, quantize_rows_int8
from tests.kernels.conftest import random_nm

FORMATS = [(4, 32, True, 96), (4, 32, False, 1120), (4, 128, True, 384), (8, None, True, 100),
           (8, None, False, 2100), (8, 32, True, 160), (4, 6, True, 42), (8, 7, False, 49),
           (4, 48, True, 96)]
BATCHES = [(1,), (5,), (17,), (64,), (2, 3)]  # > 64 rows: test_a8_limits_and_dispatch


@pytest.fixture
def a8():
    impl = impls()["native_a8"]
    if not impl.available():
        pytest.skip("no integer-dot path (AVX2 / VNNI) in this build")
    return impl


def _close_a8(y: torch.Tensor, q: QuantWeight, x: torch.Tensor) -> None:
    """y vs an fp64 product of the same rounded activations and dequantized weight."""
    xq, sx = quantize_rows_int8(x)
    xhat, w = (xq.double() * sx.double()), q.dequantize().double()
    expect = xhat @ w.T
    bound = 1e-5 * (xhat.abs() @ w.abs().T) + 1e-6
    assert y.dtype == x.dtype and y.shape == expect.shape
    err = (y.double() - expect).abs()
    assert bool((err <= bound).all()), f"max err {err.max().item():.3g} vs bound {bound.max().item():.3g}"


@pytest.mark.parametrize("bits,group,sym,in_f", FORMATS)
def test_a8_parity(a8, bits, group, sym, in_f):
    g = torch.Generator().manual_seed(in_f + bits)
    q = QuantWeight.quantize(torch.randn(37, in_f, generator=g), bits=bits, group=group, symmetric=sym)
    for lead in BATCHES:
        x = torch.randn(*lead, in_f, generator=g)
        y = quant_matmul(q, x, impl="native_a8")
        _close_a8(y, q, x)
        _close_a8(quant_matmul_a8_reference(q, x), q, x)


def test_a8_rounds_ties_to_even_and_zero_rows(a8):
    """amax = 127 makes x * 127 / amax == x, so the halves below are exact ties (half to even)."""
    q = QuantWeight.quantize(torch.randn(5, 64), bits=4, group=32)
    row = torch.zeros(64)
    row[0] = 127.0
    row[1:9] = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 126.5])
    x = torch.stack([row, torch.zeros(64)])
    xq, _ = quantize_rows_int8(x)
    assert xq[0, 1:9].tolist() == [0.0, 2.0, 2.0, 0.0, -2.0, -2.0, 4.0, 126.0]
    y = quant_matmul(q, x, impl="native_a8")
    _close_a8(y, q, x)
    assert bool((y[1] == 0).all())


def test_a8_close_to_exact_but_not_equal(a8):
    """Activation rounding moves the result by about 1/254 of max|x| per term: the inexact impl
    differs from the exact one, within that budget."""
    g = torch.Generator().manual_seed(5)
    q = QuantWeight.quantize(torch.randn(64, 256, generator=g), bits=4, group=32)
    x = torch.randn(4, 256, generator=g)
    exact = quant_matmul(q, x, impl="reference")
    y = quant_matmul(q, x, impl="native_a8")
    budget = (x.abs().amax(-1, keepdim=True) / 254) @ q.dequantize().abs().sum(1, keepdim=True).T
    assert bool(((y - exact).abs() <= budget).all())
    assert not torch.equal(y, exact)


def test_a8_fp32_scales_strided_and_empty(a8):
    g = torch.Generator().manual_seed(3)
    for bits, group in ((4, 32), (8, 64)):
        q = QuantWeight.quantize(torch.randn(9, 128, generator=g), bits=bits, group=group,
                                 symmetric=False, scale_dtype=torch.float32)
        x = torch.randn(128, 6, generator=g).T  # non-contiguous (6, 128)
        _close_a8(quant_matmul(q, x, impl="native_a8"), q, x)
        assert quant_matmul(q, torch.randn(0, 128), impl="native_a8").shape == (0, 9)


def test_a8_limits_and_dispatch(a8, monkeypatch):
    q = QuantWeight.quantize(torch.randn(8, 64), bits=4, group=32)
    with pytest.raises(TypeError, match="fp32"):
        a8.fn(q, torch.randn(2, 64, dtype=torch.bfloat16))
    x = torch.randn(2, 65, 64)  # 130 rows: 64-row chunks, each row quantized on its own
    _close_a8(a8.fn(q, x), q, x)
    nq = NMQuantWeight.from_nm(random_nm(8, 64, 2, 4, 1), bits=4, group=16)
    with pytest.raises(TypeError, match="dense QuantWeight only"):
        a8.fn(nq, torch.randn(2, 64))
    with pytest.raises(TypeError, match="dense QuantWeight only"):
        quant_matmul_a8_reference(nq, torch.randn(2, 64))
    # auto never picks the inexact impl, although its priority is the highest
    assert a8.priority > impls()["native"].priority and not a8.exact
    assert select_impl(q, torch.randn(4, 64)).name != "native_a8"
    monkeypatch.setenv("REPROLAB_KERNEL", "native_a8")
    with pytest.raises(ValueError, match="inexact"):
        select_impl(q, torch.randn(4, 64))
