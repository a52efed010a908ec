"""The one error hierarchy of statecore.

Every error statecore raises on purpose derives from :class:`StatecoreError`. Control-flow
signals (``FAIL``, ``SKIP``, ``ENDRUN``, ...) live apart, in :mod:`statecore.signals`.
Stores translate their drivers' exceptions into these at one boundary each.
"""

from __future__ import annotations

__all__ = [
    "ClusterUnavailable",
    "ConcurrencyError",
    "CorruptEvent",
    "FlowChanged",
    "FlowDefinitionError",
    "IllegalTransition",
    "InvalidRunId",
    "InvalidStoreURL",
    "LeaseHeld",
    "LeaseLost",
    "RunNotFound",
    "SchemaVersionError",
    "SerializationError",
    "ServiceUnavailable",
    "StatecoreError",
    "StoreUnavailable",
    "TaskError",
    "UnknownState",
]


class StatecoreError(Exception):
    """Base class of every statecore error."""


class FlowDefinitionError(StatecoreError, ValueError):
    """A flow is built wrongly: a cycle, a task called outside a flow, a bad argument."""


class UnknownState(StatecoreError, ValueError):
    """A state name that is not one of :mod:`statecore.states`."""


class IllegalTransition(StatecoreError):
    """A state change outside the formal machine's table.

    Attributes:
        run_id: the run.
        task: the task key (None for the flow), with ``[i]`` for a mapped child.
        from_state: the state name before.
        to_state: the state name after.
    """

    def __init__(self, run_id: str, task: str | None, from_state: str, to_state: str) -> None:
        self.run_id = run_id
        self.task = task
        self.from_state = from_state
        self.to_state = to_state
        what = "flow" if task is None else f"task {task!r}"
        super().__init__(
            f"illegal transition in run {run_id!r}: {what} cannot go from "
            f"{from_state} to {to_state}"
        )


class InvalidStoreURL(StatecoreError, ValueError):
    """A store URL that is malformed or names a scheme no installed backend serves."""


class SerializationError(StatecoreError, TypeError):
    """A value that no registered serializer can write."""


class ConcurrencyError(StatecoreError):
    """An append whose expected sequence number is not the stream's head."""


class LeaseHeld(StatecoreError):
    """The run's lease is held by another live driver."""


class LeaseLost(StatecoreError):
    """The lease expired or was taken over: this driver must stop (fencing)."""


class ServiceUnavailable(StatecoreError):
    """A service the run needs cannot be reached (after bounded retries)."""


class StoreUnavailable(ServiceUnavailable):
    """The store cannot be reached (after bounded retries)."""


class ClusterUnavailable(ServiceUnavailable):
    """The Dask scheduler cannot be reached."""


class CorruptEvent(StatecoreError):
    """An event that cannot be decoded, or a broken hash chain."""


class SchemaVersionError(CorruptEvent):
    """An event written by a newer statecore than this one."""


class InvalidRunId(StatecoreError, ValueError):
    """A run id that cannot be stored (not a string, empty, not UTF-8 text)."""


class RunNotFound(StatecoreError, KeyError):
    """No run with that id in the store."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "run not found"


class FlowChanged(StatecoreError, ValueError):
    """The flow's structure differs from the one recorded in the run's first event."""


class TaskError(Exception):
    """A task's exception rebuilt from the log when its class cannot be imported.

    Attributes:
        type_name: the original exception's qualified class name.
        traceback_text: the original traceback, as text.
    """

    def __init__(self, type_name: str, *args: object, traceback_text: str = "") -> None:
        super().__init__(*args)
        self.type_name = type_name
        self.traceback_text = traceback_text

    def __repr__(self) -> str:
        return f"TaskError[{self.type_name}]{self.args!r}"
