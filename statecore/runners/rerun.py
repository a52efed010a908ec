"""Deprecated: ``statecore.runners.rerun`` moved: ``rerun`` to ``statecore.runners.local``
(with the other entry points) and ``plan_rerun`` to ``statecore.plans``."""

from __future__ import annotations

import warnings

from statecore.plans import plan_rerun
from statecore.runners.local import rerun

warnings.warn(
    "statecore.runners.rerun moved: rerun to statecore.runners.local, plan_rerun to "
    "statecore.plans; the old path is removed in the next release",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["plan_rerun", "rerun"]
