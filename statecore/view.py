"""Deprecated: moved to ``statecore.fold``; this path is removed in the next release."""

from __future__ import annotations

from statecore._moved import alias

alias(__name__, "statecore.fold")
