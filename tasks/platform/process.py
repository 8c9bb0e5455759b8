"""Is a recorded process still the one that wrote a record? (staging dirs, MLflow runs, servers)."""

from __future__ import annotations

import os
from pathlib import Path


def proc_start(pid: int) -> str:
    """Start time of ``pid`` in clock ticks since boot (Linux ``/proc``), or "" where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def pid_alive(pid: int, start: str = "") -> bool:
    """Whether process ``pid`` runs (and, given its recorded ``start``, is the same process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not (start and proc_start(pid) and proc_start(pid) != start)
