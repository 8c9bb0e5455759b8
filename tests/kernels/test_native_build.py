"""The native build/loader: a library that builds but does not load here falls back (None + a warning)."""

from __future__ import annotations

import ctypes

import pytest

from kernels import native_build


def test_unloadable_library_falls_back_to_the_reference_path(tmp_path, monkeypatch):
    src = tmp_path / "k.c"
    src.write_text("int answer(void) { return 42; }\n")
    monkeypatch.setenv("REPROLAB_CACHE", str(tmp_path / "cache"))
    if native_build.build_library(src, "k") is None:
        pytest.skip("no C compiler here")

    def broken(path, *a, **k):
        raise OSError(f"{path}: undefined symbol: _cvtsh_ss")

    monkeypatch.setattr(ctypes, "CDLL", broken)
    with pytest.warns(UserWarning, match="does not load .*undefined symbol"):
        assert native_build.build_library(src, "k") is None
