"""``prefect.context``: Prefect 1's context object, over :data:`statecore.context`.

Inside a task body it shows statecore's context (``run_id``, ``flow_name``,
``task_name``, ``map_index``, ``parameters``, ``logger``, ...) with Prefect 1's extra keys
derived from it (``flow_run_id``, ``scheduled_start_time`` as a datetime, ``date``,
``today``, ``yesterday``, ``tomorrow`` and their ``_nodash`` forms). Everywhere it also
shows the values set with ``prefect.context(key=value)`` (a ``with`` block),
``prefect.context.update(...)`` or ``prefect.context.key = value``, as Prefect 1 let
tests do. Those layers are process-wide, not per thread, so a run started inside
``with prefect.context(...)`` sees them on its worker threads too. While a ``case`` block
is open, ``prefect.context["case"]`` is that block (the innermost one), as in Prefect 1.

``prefect.context.secrets`` is a read-only mapping of the local secrets: those set in the
context (``prefect.context(secrets={...})``) and the environment variables
``PREFECT__CONTEXT__SECRETS__NAME``, as Prefect 1's configuration put them there. Read
inside a task body, a value goes through the run's secret lookup, so it is scrubbed from
everything the run writes (:mod:`statecore.compat.secrets`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from statecore.building import case_stack
from statecore.compat._layers import BASE, LAYERS, LOCK, local_secrets, stacked
from statecore.compat.secrets import resolve as _resolve
from statecore.context import context as _run_context

__all__ = ["PrefectContext", "context"]


def _run_values() -> dict[str, Any]:
    """statecore's context for the running task, with Prefect 1's derived keys."""
    values = dict(_run_context)
    if not values:
        return values
    values.setdefault("flow_run_id", values.get("run_id"))
    start = values.get("scheduled_start_time")
    if isinstance(start, int):
        when = dt.datetime.fromtimestamp(start / 1e9, tz=dt.UTC)
        values["scheduled_start_time"] = when
        values["date"] = when
        for key, day in (
            ("today", when),
            ("yesterday", when - dt.timedelta(days=1)),
            ("tomorrow", when + dt.timedelta(days=1)),
        ):
            values[key] = day.strftime("%Y-%m-%d")
            values[f"{key}_nodash"] = day.strftime("%Y%m%d")
    return values


class _Secrets(Mapping[str, Any]):
    """``prefect.context.secrets``: the local secrets, read through the run's lookup."""

    def __getitem__(self, name: str) -> Any:
        if name not in local_secrets():
            raise KeyError(name)
        return _resolve(name, decode_json=False)

    def __iter__(self) -> Iterator[str]:
        return iter(local_secrets())

    def __len__(self) -> int:
        return len(local_secrets())

    def __repr__(self) -> str:
        return f"<prefect.context.secrets: {sorted(local_secrets())}>"


class PrefectContext(Mapping[str, Any]):
    """Prefect 1's ``prefect.context``: a mapping with attribute access, a context
    manager that adds values for a block, and ``update``."""

    def _all(self) -> dict[str, Any]:
        values = stacked()
        values.update(_run_values())
        values["secrets"] = _Secrets()
        blocks = case_stack.get()
        if blocks:
            values["case"] = blocks[-1]
        return values

    def __getitem__(self, key: str) -> Any:
        return self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        try:
            return self._all()[key]
        except KeyError:
            from statecore.compat.errors import OutOfScopeAttribute

            raise OutOfScopeAttribute(
                f"prefect.context has no {key!r} here (inside a task body it holds "
                "statecore.context's keys; set your own with prefect.context(key=value))"
            ) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __setitem__(self, key: str, value: Any) -> None:
        with LOCK:
            BASE[key] = value

    def __delitem__(self, key: str) -> None:
        with LOCK:
            del BASE[key]

    def update(self, *args: Mapping[str, Any], **kwargs: Any) -> None:
        """Set values for the rest of the process (Prefect 1's ``context.update``)."""
        with LOCK:
            for mapping in args:
                BASE.update(mapping)
            BASE.update(kwargs)

    def clear(self) -> None:
        """Forget every value set in this process (statecore's run values stay)."""
        with LOCK:
            BASE.clear()
            LAYERS.clear()

    def to_dict(self) -> dict[str, Any]:
        """A plain copy of what the context shows now."""
        values = self._all()
        values["secrets"] = dict(local_secrets())
        return values

    @contextlib.contextmanager
    def __call__(self, *args: Mapping[str, Any], **kwargs: Any) -> Iterator[PrefectContext]:
        """``with prefect.context(a=1):`` -- the values hold until the block ends."""
        layer: dict[str, Any] = {}
        for mapping in args:
            layer.update(mapping)
        layer.update(kwargs)
        with LOCK:
            LAYERS.append(layer)
        try:
            yield self
        finally:
            with LOCK:
                # blocks may end out of order on several threads: remove this one
                for i in range(len(LAYERS) - 1, -1, -1):
                    if LAYERS[i] is layer:
                        del LAYERS[i]
                        break

    def __repr__(self) -> str:
        return f"<prefect.context {sorted(self._all())}>"


context = PrefectContext()
