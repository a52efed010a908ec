"""The command line's exit statuses, and the one place statecore's errors become them.

The statuses are documented in :mod:`statecore.cli.main`; every command is wrapped in
:func:`translate_errors`, and refuses bad input by raising :class:`CLIError`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import click

from statecore.errors import (
    ConcurrencyError,
    LeaseHeld,
    LeaseLost,
    ServiceUnavailable,
    StatecoreError,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_UNFINISHED",
    "EXIT_USAGE",
    "CLIError",
    "translate_errors",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNFINISHED = 3
EXIT_UNAVAILABLE = 4


class CLIError(click.ClickException):
    """A message for the user and the exit status that goes with it."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        # click declares exit_code a class variable; each error carries its own status
        object.__setattr__(self, "exit_code", exit_code)


def translate_errors(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn statecore's errors into messages with the documented exit status."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except (ServiceUnavailable, LeaseHeld, LeaseLost, ConcurrencyError) as exc:
            raise CLIError(str(exc), EXIT_UNAVAILABLE) from exc
        except ImportError as exc:  # a store URL whose extra is not installed
            raise CLIError(f"the store cannot be opened: {exc}", EXIT_UNAVAILABLE) from exc
        except StatecoreError as exc:  # unknown run, corrupt log, changed flow, bad URL, ...
            raise CLIError(str(exc), EXIT_USAGE) from exc

    return wrapper
