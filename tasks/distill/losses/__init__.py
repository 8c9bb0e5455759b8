"""Distillation losses, registered by name (``tasks.distill.losses.registry``).

Importing this package imports every module in it, so every ``@register_loss`` has run before
:func:`get_loss` is called. A module whose name starts with ``_`` is skipped.
"""

from __future__ import annotations

import importlib
import pkgutil

from tasks.distill.losses.registry import LossEntry, check_loss_params, get_loss, register_loss, registered_losses

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["LossEntry", "check_loss_params", "get_loss", "register_loss", "registered_losses"]
