"""``statecore.context``: a read-only mapping of the running task's context.

Inside a task body it holds at least ``run_id``, ``flow_name``, ``task_name``,
``task_full_name`` (``name[i]`` for a mapped child), ``task_slug``, ``map_index``,
``parameters``, ``task_run_count``, ``task_loop_count``, ``task_loop_result``, ``resume``,
``scheduled_start_time`` and a ``logger`` whose records are appended to the run's log.
Outside a task it is empty. The runner sets it per worker through a ContextVar.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["Context", "context", "has_secret_resolver", "resolve_secret"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_values: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "statecore_context", default=_EMPTY
)
# the runner's lookup; it takes ``(name, **options)`` (see :func:`resolve_secret`)
_secret_resolver: contextvars.ContextVar[Callable[..., Any] | None] = contextvars.ContextVar(
    "statecore_secret_resolver", default=None
)


class Context(Mapping[str, Any]):
    """A read-only view of the current task's context."""

    def __getitem__(self, key: str) -> Any:
        return _values.get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(_values.get())

    def __len__(self) -> int:
        return len(_values.get())

    def __getattr__(self, key: str) -> Any:
        try:
            return _values.get()[key]
        except KeyError:
            raise AttributeError(key) from None

    def __repr__(self) -> str:
        return f"<Context {dict(_values.get())!r}>"


context = Context()


# The runner's setters are the ContextVars' own methods, not wrappers: they run twice
# around every task body, and a Python frame each is a visible share of a short task.

#: ``set_context(values)``: set the context for this thread (runner use); returns a
#: token for :func:`reset_context`
set_context = _values.set
#: ``reset_context(token)``: restore the context before :func:`set_context`
reset_context = _values.reset
#: ``set_secret_resolver(resolver)``: install the runner's secret lookup for this thread
set_secret_resolver = _secret_resolver.set
#: ``reset_secret_resolver(token)``: restore the lookup before :func:`set_secret_resolver`
reset_secret_resolver = _secret_resolver.reset


def has_secret_resolver() -> bool:
    """Whether this thread runs a task body whose secrets the run resolves (and scrubs):
    False outside a run and on a remote worker, which cannot tell the run what to scrub."""
    return _secret_resolver.get() is not None


def resolve_secret(name: str, **options: Any) -> Any:
    """The value of secret ``name``, learnt by the run so that it is scrubbed from
    everything the run writes afterwards (raises FAIL when it is missing).

    Args:
        name: the secret's name.
        **options: for another API's secrets (the Prefect 1 layer): ``lookup``, a
            callable ``name -> value or None`` tried after ``flow.run(secrets=...)`` and
            before the environment; ``convert``, a callable applied to the value found
            (whose texts are scrubbed as well as the raw value's).
    """
    resolver = _secret_resolver.get()
    if resolver is None:
        from statecore import signals

        raise signals.FAIL(f'Secret "{name}" was not found')
    return resolver(name, **options) if options else resolver(name)
