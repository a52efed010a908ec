"""The ``statecore`` command line: commands (``main``) and their terminal and HTML rendering.

It sits beside the runners (``statecore.runners``) and reads the core's read models
(``statecore.fold``, ``statecore.attempts``, ``statecore.sessions``, ``statecore.audit``).
"""

from __future__ import annotations

from statecore.cli.main import cli, main

__all__ = ["cli", "main"]
