"""The ``statecore`` command line: commands (``main``) and their terminal and HTML rendering.

It sits beside the runners (``statecore.runners``) and reads the core's read models
(``statecore.fold``, ``statecore.attempts``, ``statecore.sessions``, ``statecore.audit``).
``ui_command`` adds ``ui`` and replaces ``timeline`` (click keeps the last command
registered under a name).
"""

from __future__ import annotations

from statecore.cli.main import cli, main
from statecore.cli.ui_command import timeline, ui

cli.add_command(ui)
cli.add_command(timeline)

__all__ = ["cli", "main"]
