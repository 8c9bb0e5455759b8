"""Dispatch: nm_matmul, the env switch and shared input validation."""

from __future__ import annotations

import pytest
import torch

from kernels.nm import Impl, NMWeight, get_impl, impls, nm_matmul, register_impl, select_impl
from tests.kernels.conftest import random_nm


def test_reference_matches_dense_linear():
    nw = random_nm(12, 16, 2, 4, 1)
    x = torch.randn(2, 3, 16)  # (..., in) with two batch dims
    y = nm_matmul(nw, x, impl="reference")
    assert y.shape == (2, 3, 12)
    torch.testing.assert_close(y, torch.nn.functional.linear(x, nw.to_dense()))


def test_env_forces_reference(monkeypatch):
    nw = random_nm(8, 8, 1, 4, 1)
    x = torch.randn(2, 8)
    calls = []
    name = "spy_for_env_test"
    if name not in impls():
        register_impl(Impl(name, lambda w, x: calls.append(1) or x @ w.to_dense().T,
                           available=lambda: True, supports=lambda w, x: True, priority=-100))
    nm_matmul(nw, x, impl=name)
    assert calls == [1]
    monkeypatch.setenv("REPROLAB_KERNEL", "reference")
    assert select_impl(nw, x, name).name == "reference"
    nm_matmul(nw, x, impl=name)
    assert calls == [1]
    monkeypatch.setenv("REPROLAB_KERNEL", name)
    assert select_impl(nw, x).name == name


def test_unknown_impl_and_duplicates():
    nw = random_nm(8, 8, 1, 4, 1)
    with pytest.raises(ValueError, match="unknown N:M impl 'nope'"):
        nm_matmul(nw, torch.randn(1, 8), impl="nope")
    with pytest.raises(ValueError, match="already registered"):
        register_impl(get_impl("reference"))


def test_every_impl_has_predicates():
    for impl in impls().values():
        assert isinstance(impl.available(), bool)


def test_shared_validation_messages():
    nw = random_nm(8, 8, 1, 4, 1)
    with pytest.raises(ValueError, match="in_features=8"):
        nm_matmul(nw, torch.randn(2, 7))
    with pytest.raises(TypeError, match="dtype"):
        nm_matmul(nw, torch.randn(2, 8, dtype=torch.float64))
    with pytest.raises(TypeError, match="NMWeight"):
        nm_matmul(nw.to_dense(), torch.randn(2, 8))
    assert isinstance(nw, NMWeight)


def test_auto_selection_on_cpu():
    w32 = random_nm(64, 32, 1, 8, 32)
    w1 = random_nm(64, 32, 1, 8, 1)
    names = {n for n, i in impls().items() if i.available()}
    small, big = torch.randn(4, 32), torch.randn(40, 32)
    if "native" in names:
        assert select_impl(w32, small).name == "native"
        assert select_impl(w1, small).name == "native"
    assert select_impl(w32, big).name == "cpu"  # BLAS-backed gather + bmm
    if "native" in names:
        assert select_impl(w1, big).name == "native"
    assert select_impl(w1, torch.randn(80, 32)).name == "reference"  # no fast path at that size
    wb = w32.to(dtype=torch.bfloat16)
    assert select_impl(wb, small.bfloat16()).name == "cpu"


def test_native_rejects_what_it_cannot_do():
    native = impls()["native"]
    if not native.available():
        pytest.skip("no C compiler")
    w = random_nm(8, 8, 1, 4, 1)
    with pytest.raises(TypeError, match="fp32 only"):
        native.fn(w.to(dtype=torch.bfloat16), torch.randn(2, 8, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="at most 64 rows"):
        native.fn(w, torch.randn(65, 8))


@pytest.mark.parametrize("n,m,in_features", [(2, 4, 72), (1, 2, 80), (2, 4, 64)])
def test_native_packed_half_path(n, m, in_features):
    """1:2 / 2:4, v = 1, batch 1 reads the packed indices (AVX-512 builds): SIMD steps + scalar tail,
    and 9 rows = two 4-row tiles + a remainder."""
    native = impls()["native"]
    if not native.available():
        pytest.skip("no C compiler")
    w = random_nm(9, in_features, n, m, 1)
    x = torch.randn(1, in_features)
    torch.testing.assert_close(native.fn(w, x), x @ w.to_dense().T)


def test_a_kernel_switch_no_family_registers_is_refused(monkeypatch):
    """REPROLAB_KERNEL is shared by the N:M and quant families: a name of the other family is
    skipped, a name of neither is a typo and raises naming the switch and the known names."""
    nw = random_nm(8, 8, 1, 4, 1)
    monkeypatch.setenv("REPROLAB_KERNEL", "cpuu")
    with pytest.raises(ValueError, match=r"REPROLAB_KERNEL='cpuu' names no kernel impl.*reference"):
        nm_matmul(nw, torch.randn(1, 8))
