"""The errors of the Prefect 1 compatibility layer.

A Prefect 1 name that statecore does not serve raises :class:`OutOfScope`, whose message
says what to use instead. It comes in the two shapes Python's own lookups expect, so
``hasattr`` and ``from prefect import X`` behave as with any missing name:
:class:`OutOfScopeAttribute` (an ``AttributeError``, from an attribute lookup) and
:class:`OutOfScopeImport` (an ``ImportError``, from an import).
"""

from __future__ import annotations

from statecore.errors import StatecoreError

__all__ = ["OutOfScope", "OutOfScopeAttribute", "OutOfScopeImport", "PrefectInstalled"]


class OutOfScope(StatecoreError):
    """A Prefect 1 name or feature statecore does not provide; the message says what to
    use instead."""


class OutOfScopeAttribute(OutOfScope, AttributeError):
    """An out-of-scope name met by an attribute lookup (``prefect.Client``)."""


class OutOfScopeImport(OutOfScope, ImportError):
    """An out-of-scope name met by an import (``from prefect import Client``,
    ``import prefect.storage``)."""


class PrefectInstalled(StatecoreError):
    """:func:`statecore.compat.install` found a real Prefect and was not forced."""
