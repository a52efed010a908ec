"""Old import paths kept for one release: each old module becomes an alias of the new one."""

from __future__ import annotations

import importlib
import sys
import warnings


def alias(old: str, new: str) -> None:
    """Make module ``old`` the module ``new``, warning that the old path goes away.

    The old name then *is* the new module (same object), so ``from old import name``
    keeps working for every name, private ones included.
    """
    warnings.warn(
        f"{old} moved to {new}; the old path is removed in the next release",
        DeprecationWarning,
        stacklevel=3,
    )
    sys.modules[old] = importlib.import_module(new)
