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
from pathlib import Path

__all__ = ["FLAGS", "build_library", "cache_dir", "has_avx512"]

FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11"]


def cache_dir() -> Path:
    return Path(os.environ.get("REPROLAB_CACHE", Path.home() / ".cache" / "reprolab"))


def build_library(source: Path, stem: str) -> ctypes.CDLL | None:
    """Compile ``source`` once per (source, flags) hash into ``<cache>/<stem>_<hash>.so`` and load it.

    Returns None when no compiler is found, the source is missing or the build fails.
    """
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None or not source.exists():
        return None
    digest = hashlib.sha256(source.read_bytes() + " ".join(FLAGS).encode()).hexdigest()[:16]
    target = cache_dir() / f"{stem}_{digest}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so.tmp")
        os.close(fd)
        try:
            subprocess.run([compiler, *FLAGS, str(source), "-o", tmp], check=True,
                           capture_output=True, timeout=120)
            os.replace(tmp, target)
        except (OSError, subprocess.SubprocessError):
            Path(tmp).unlink(missing_ok=True)
            return None
    return ctypes.CDLL(str(target))


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
