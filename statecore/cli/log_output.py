"""The ``statecore`` logger's records on stderr while ``run``, ``resume`` or ``rerun``
works, formatted like Prefect 1's (``[time] LEVEL - logger | message``, UTC).

The handler is attached for the command only and removed after it, so a program that
imports statecore still sees nothing unless it configures logging itself. Control
characters in a record (an error's message, a traceback) are escaped, not obeyed.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from statecore.cli.timeline import printable

__all__ = ["LEVELS", "cli_logging", "level_for"]

#: ``-q``, default, ``-v``.
LEVELS = {"quiet": logging.WARNING, "default": logging.INFO, "verbose": logging.DEBUG}


def level_for(verbose: bool, quiet: bool) -> int:
    """The level ``-v``/``-q`` ask for (both: an error, raised by the caller)."""
    if verbose:
        return LEVELS["verbose"]
    return LEVELS["quiet"] if quiet else LEVELS["default"]


class _Formatter(logging.Formatter):
    converter = time.gmtime  # type: ignore[assignment]  # typeshed wants an argument

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return "\n".join(printable(line) for line in text.split("\n"))


@contextmanager
def cli_logging(level: int) -> Iterator[logging.Handler]:
    """Show the ``statecore`` logger's records at ``level`` and above on stderr."""
    logger = logging.getLogger("statecore")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _Formatter("[%(asctime)s] %(levelname)s - %(name)s | %(message)s", "%Y-%m-%d %H:%M:%S+0000")
    )
    handler.setLevel(level)
    before = logger.level
    logger.addHandler(handler)
    # the logger stays at INFO or below even with -q: a run writes a task's failure
    # (an ERROR) only when its INFO lines are wanted; the handler drops what -q hides
    logger.setLevel(min(level, logging.INFO))
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)
        handler.flush()
