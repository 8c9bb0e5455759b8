"""The optional peer environments installed with ``--no-deps`` on top of the lock (``make peers14-env``,
``make peers16-env``) can never replace a locked package: every line is an exact pin and none names a
package that requirements.lock already pins (a --no-deps install of it would silently move the lock)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;]+)(\s*;.*)?", line)
        assert m, f"{path.name}: not an exact pin: {raw!r}"
        pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(3)
    return pins


@pytest.mark.parametrize("name", ["peers14-requirements.txt", "peers16-requirements.txt"])
def test_no_deps_peer_pins_leave_the_lock_alone(name):
    peers = _pins(ROOT / "benchmarks" / name)
    lock = _pins(ROOT / "requirements.lock")
    assert peers, f"{name} pins nothing"
    clash = sorted(set(peers) & set(lock))
    assert not clash, f"{name} re-pins locked packages {clash} (a --no-deps install would replace them)"
