"""Which ``with Flow(...)`` block (and which ``case`` blocks) code is running inside.

Tasks called inside a ``with Flow(...)`` block add themselves to that flow; this module
holds the context variables both sides read, so tasks need not import the flow module
(which imports them).
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statecore.flow import Flow

__all__ = ["current_flow"]

current_flow_var: contextvars.ContextVar[Flow | None] = contextvars.ContextVar(
    "statecore_flow", default=None
)
case_stack: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar(
    "statecore_case", default=()
)


def current_flow() -> Flow | None:
    """The flow of the innermost ``with Flow(...)`` block, if any."""
    return current_flow_var.get()
