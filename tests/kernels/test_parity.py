"""Parity of every registered N:M impl against a dense matmul with zeros (HOUSE_STYLE 4.6).

fp32: ``assert_close``. fp16/bf16: the error against the fp32 ground truth must be at most twice the
error of the reference impl run in the same low dtype (FlashAttention's ratio rule).
Triton runs under ``TRITON_INTERPRET=1`` on CPU (tiny shapes); GPU-only impls skip without CUDA.
"""

from __future__ import annotations

import pytest
import torch

from kernels.nm import NMWeight, impls, nm_matmul
from tests.kernels.conftest import random_nm

PATTERNS = [(1, 2), (2, 4), (1, 4), (2, 8), (1, 8), (16, 32), (12, 32), (8, 32), (4, 32)]
GPU_ONLY = {"semi_structured"}
IMPLS = sorted(impls())
HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(params=IMPLS)
def impl(request):
    """An impl name, with its environment set up (or a clean skip)."""
    name = request.param
    if name in GPU_ONLY and not HAS_CUDA:
        pytest.skip(f"{name} needs CUDA")
    assert impls()[name].available(), f"{name} unavailable (TRITON_INTERPRET is set in conftest)"
    return name


def device_for(name: str) -> str:
    return "cuda" if HAS_CUDA and name in GPU_ONLY | {"triton"} else "cpu"


def run_case(name, n, m, v, dtype, out_features, in_features, batch_shape, seed=0):
    device = device_for(name)
    if dtype not in impls()[name].dtypes:
        pytest.skip(f"{name} does not compute in {dtype}")
    w = random_nm(out_features, in_features, n, m, v, dtype=dtype, seed=seed).to(device)
    x = torch.randn(*batch_shape, in_features, generator=torch.Generator().manual_seed(seed + 1))
    x = x.to(device=device, dtype=dtype)
    if not impls()[name].supports(w, x) and name in GPU_ONLY:
        pytest.skip(f"{name} does not support {n}:{m} v={v} {dtype} {w.shape}")
    y = nm_matmul(w, x, impl=name)
    assert y.shape == (*batch_shape, out_features) and y.dtype == dtype and y.device == x.device
    truth = x.double() @ w.to_dense().double().T  # dense matmul with zeros, in float64
    return y, truth, w, x


@pytest.mark.parametrize("n,m", PATTERNS)
@pytest.mark.parametrize("v", [1, 32])
@pytest.mark.parametrize("batch_shape", [(2, 3), (1,)])
def test_parity_fp32(impl, n, m, v, batch_shape):
    # odd shapes: 42 rows (a partial last block of 10 rows for v = 32), 3 groups, odd batches
    y, truth, _, _ = run_case(impl, n, m, v, torch.float32, 42, 3 * m, batch_shape)
    torch.testing.assert_close(y.double(), truth, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n,m", [(2, 4), (1, 8), (12, 32)])
@pytest.mark.parametrize("v", [1, 32])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_parity_low_precision(impl, n, m, v, dtype):
    y, truth, w, x = run_case(impl, n, m, v, dtype, 64, 4 * m, (5,), seed=3)
    ref = nm_matmul(w, x, impl="reference")
    err = (y.double() - truth).abs().max().item()
    ref_err = (ref.double() - truth).abs().max().item()
    assert ref_err > 0, "degenerate case: the low-precision reference is exact"
    assert err <= 2 * ref_err, f"{impl}: error {err:.3g} > 2 x reference error {ref_err:.3g}"


@pytest.mark.parametrize("v", [1, 32])
def test_parity_gradients(impl, v):
    """Backward through nm_matmul equals a masked dense Linear's, for values and x."""
    w = random_nm(40, 16, 2, 8, v, seed=5).to(device_for(impl))
    x = torch.randn(3, 16, device=w.device)
    values = w.values.clone().requires_grad_(True)
    xs = x.clone().requires_grad_(True)
    y = nm_matmul(w.with_values(values), xs, impl=impl)
    g = torch.randn_like(y)
    (y * g).sum().backward()

    dense = w.to_dense().clone().requires_grad_(True)
    xd = x.clone().requires_grad_(True)
    (torch.nn.functional.linear(xd, dense) * g).sum().backward()
    torch.testing.assert_close(xs.grad, xd.grad)
    torch.testing.assert_close(values.grad, dense.grad[w.mask()].view_as(values))


def test_same_errors_in_every_impl(impl):
    w = random_nm(32, 16, 2, 4, 1).to(device_for(impl))
    bad_inputs = [
        (w, torch.randn(2, 12, device=w.device), ValueError),  # shape mismatch
        (w, torch.randn(2, 16, dtype=torch.float64, device=w.device), TypeError),  # dtype
        (w.to_dense(), torch.randn(2, 16, device=w.device), TypeError),  # not compressed
        (w, torch.ones(2, 16, dtype=torch.int64, device=w.device), TypeError),  # not float
    ]
    for weight, x, error in bad_inputs:
        with pytest.raises(error):
            impls()[impl].fn(weight, x)
        with pytest.raises(error):
            nm_matmul(weight, x, impl=impl)


def test_n_greater_than_m_rejected_before_any_impl():
    with pytest.raises(ValueError, match="n <= m"):
        NMWeight.from_dense(torch.randn(4, 8), n=5, m=4)
    good = NMWeight.from_dense(torch.randn(4, 8), n=2, m=4)
    with pytest.raises(ValueError, match="n <= m"):
        NMWeight(values=good.values, indices=good.indices, n=5, m=4, v=1, shape=(4, 8))


@pytest.mark.parametrize("v", [4, 16, 64])
def test_parity_other_vector_sizes(impl, v):
    # v = 16 / 64 take Triton's tl.dot path with 16- / 64-row tiles; v = 4 its per-row path
    y, truth, _, _ = run_case(impl, 2, 8, v, torch.float32, 80, 16, (3,))
    torch.testing.assert_close(y.double(), truth, rtol=1e-5, atol=1e-5)
