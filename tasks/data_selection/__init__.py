"""Data-centric science: which examples to label, keep or train on.

One interface (:func:`~tasks.data_selection.selection.select`) with every selector behind a
registry (``selection``); each module of this package registers its selectors on import and
this ``__init__`` imports every module in the folder, so a new selector file needs no second
edit. Knows no pruning, distillation, auditing or quantization.
"""

from __future__ import annotations

import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
