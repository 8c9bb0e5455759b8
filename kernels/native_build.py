"""Build-on-first-use for the project's native C kernels (shared by :mod:`kernels.nm.native` and
:mod:`kernels.quant.native`).

A kernel source is compiled with the system C compiler (``$CC``, default ``cc``) and ``FLAGS`` into
``$REPROLAB_CACHE`` (default ``~/.cache/reprolab``), keyed by a hash of the source and the flags, so
an edited source rebuilds and an unchanged one loads from the cache. The build is atomic (temp file +
rename). ``None`` means no compiler or a failed build; callers then report themselves unavailable.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["FLAGS", "MAX_BATCH", "build_library", "cache_dir", "has_avx512", "kmajor", "native_rows", "team_size"]

FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11"]
INCLUDE = Path(__file__).with_name("csrc")  # headers shared by the kernels (hashed with each source)
MAX_BATCH = 64  # rows of x a native kernel takes; beyond it a BLAS-backed path is the right tool
PARALLEL_WORK = 1 << 20  # multiply-adds per extra thread (an OpenMP wake-up costs tens of us)


def cache_dir() -> Path:
    return Path(os.environ.get("REPROLAB_CACHE", Path.home() / ".cache" / "reprolab"))


def build_library(source: Path, stem: str) -> ctypes.CDLL | None:
    """Compile ``source`` once per (source, flags) hash into ``<cache>/<stem>_<hash>.so`` and load it.

    Returns None when no compiler is found, the source is missing or the build fails.
    """
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None or not source.exists():
        return None
    headers = b"".join(h.read_bytes() for h in sorted(INCLUDE.glob("*.h")))
    digest = hashlib.sha256(source.read_bytes() + headers + " ".join(FLAGS).encode()).hexdigest()[:16]
    target = cache_dir() / f"{stem}_{digest}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so.tmp")
        os.close(fd)
        try:
            subprocess.run([compiler, *FLAGS, f"-I{INCLUDE}", str(source), "-o", tmp], check=True,
                           capture_output=True, timeout=120)
            os.replace(tmp, target)
        except (OSError, subprocess.SubprocessError):
            Path(tmp).unlink(missing_ok=True)
            return None
    try:
        return ctypes.CDLL(str(target))
    except OSError as err:  # built but not loadable here (e.g. an intrinsic this CPU's -march lacks)
        warnings.warn(f"native kernel {target.name} does not load ({err}); using the reference path", stacklevel=2)
        return None


@functools.cache
def has_avx512() -> bool:
    """True when ``-march=native`` on this machine defines ``__AVX512F__``."""
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        return False
    try:
        out = subprocess.run([compiler, *FLAGS[:2], "-dM", "-E", "-x", "c", "/dev/null"],
                             capture_output=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return b"__AVX512F__" in out


def native_rows(x: Tensor, in_features: int, what: str, lib: ctypes.CDLL | None) -> tuple[Tensor, tuple[int, ...], int]:
    """The checks every native impl makes after its family's ``check_inputs``, and x as rows.

    Returns:
        ``(x2, lead, batch)``: x as a contiguous ``(B, in)`` fp32 CPU tensor, its leading shape and B.

    Raises:
        TypeError: x not fp32. ValueError: x not on CPU, or more than :data:`MAX_BATCH` rows.
        RuntimeError: ``lib`` is None (the kernel could not be built).
    """
    if x.dtype != torch.float32:
        raise TypeError(f"native {what} impl supports fp32 only, got {x.dtype}")
    if x.device.type != "cpu":
        raise ValueError(f"native {what} impl runs on CPU, got {x.device}")
    x2 = x.detach().reshape(-1, in_features).contiguous()  # (B, in)
    if x2.shape[0] > MAX_BATCH:
        raise ValueError(f"native {what} impl handles at most {MAX_BATCH} rows of x, got {x2.shape[0]}")
    if lib is None:
        raise RuntimeError(f"native {what} kernel could not be built (no C compiler?)")
    return x2, tuple(x.shape[:-1]), x2.shape[0]


def kmajor(x2: Tensor) -> tuple[Tensor, int]:
    """x (B, in) as K-major ``(in, Bp)`` with the batch zero padded to ``Bp``, a multiple of 16: the
    layout of the v = 1, batch > 1 kernels (one 16-wide FMA per kept value and batch chunk)."""
    batch, in_features = x2.shape
    padded = -(-batch // 16) * 16
    xt = x2.new_zeros(in_features, padded)  # (in, Bp)
    xt[:, :batch] = x2.T
    return xt, padded


def team_size(work: int) -> int:
    """OpenMP threads for ``work`` multiply-adds: one per :data:`PARALLEL_WORK`, at most torch's.

    NOTE: an OpenMP team costs tens of microseconds to wake (milliseconds on a loaded machine), so
    small layers run on the calling thread only.
    """
    return max(1, min(torch.get_num_threads(), work // PARALLEL_WORK))
