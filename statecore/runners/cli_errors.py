"""Deprecated: moved to ``statecore.cli.errors``; this path is removed in the next release."""

from __future__ import annotations

from statecore._moved import alias

alias(__name__, "statecore.cli.errors")
