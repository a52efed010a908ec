"""Deprecated: moved to ``statecore.cli.timeline``; this path is removed in the next release."""

from __future__ import annotations

from statecore._moved import alias

alias(__name__, "statecore.cli.timeline")
