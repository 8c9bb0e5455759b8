"""One name → plug-in table per kind of plug-in (losses, membership attacks, data selectors).

Plug-ins register themselves with a decorator when their module is imported; a duplicate name
raises at import, and an unknown name raises listing what is registered. A registry is a
``dict`` (iterate, ``in``, ``[name]``) with those two checks on top.
"""

from __future__ import annotations

from typing import TypeVar

from tasks.platform.errors import ReprolabError

T = TypeVar("T")


class Registry(dict[str, T]):
    """Plug-ins of one kind by name.

    Args:
        kind: what one entry is called in messages ("loss", "attack", "selector").
        plural: the plural for the "registered ..." list (default ``kind + "s"``).
    """

    def __init__(self, kind: str, plural: str | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.plural = plural or f"{kind}s"

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; a name registered twice raises."""
        if name in self:
            raise ReprolabError(f"{self.kind} {name!r} is already registered")
        self[name] = entry
        return entry

    def lookup(self, name: str) -> T:
        """The entry ``name``; an unknown name raises naming it and the registered ones."""
        if name not in self:
            raise ReprolabError(f"unknown {self.kind} {name!r}; registered {self.plural}: {sorted(self)}")
        return self[name]

    def names(self) -> list[str]:
        return sorted(self)
