"""Signals: exceptions a task body (or trigger) raises to choose its state.

They derive from ``BaseException`` so that a task's own ``except Exception`` does not
swallow them, as in Prefect 1. Each state signal carries the state it produces in
``.state``; its result defaults to the signal itself, so a reducer that receives a
skipped child's result sees the ``SKIP`` object.

Example:
    >>> from statecore import signals
    >>> s = signals.SKIP("nothing to do")
    >>> s.state.name, s.state.message
    ('Skipped', 'nothing to do')
    >>> signals.SUCCESS("done", result=3).state.result
    3
"""

from __future__ import annotations

from typing import Any

from statecore import states

__all__ = [
    "ENDRUN",
    "FAIL",
    "LOOP",
    "PAUSE",
    "RETRY",
    "SKIP",
    "SUCCESS",
    "TRIGGERFAIL",
    "VALIDATIONFAIL",
    "Signal",
    "StateSignal",
    "TaskTimeoutSignal",
    "signal_from_state",
]


class Signal(BaseException):
    """Base class of every statecore signal."""


class StateSignal(Signal):
    """A signal that produces a state of class ``state_class``."""

    state_class: type[states.State] = states.State

    def __init__(self, message: str | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(message, *args)
        kwargs.setdefault("result", self)
        self.message = message
        self.state = self.state_class(message, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.args == getattr(other, "args", None)

    __hash__ = BaseException.__hash__


class FAIL(StateSignal):
    """Fail the task (retried if it has retries left)."""

    state_class = states.Failed


class TRIGGERFAIL(FAIL):
    """The trigger did not pass."""

    state_class = states.TriggerFailed


class VALIDATIONFAIL(FAIL):
    """The result failed validation."""

    state_class = states.ValidationFailed


class SUCCESS(StateSignal):
    """Succeed now, with an optional ``result``."""

    state_class = states.Success


class RETRY(StateSignal):
    """Retry the task now, whatever ``max_retries`` says."""

    state_class = states.Retrying


class SKIP(StateSignal):
    """Skip the task; downstream tasks skip too unless ``skip_on_upstream_skip=False``."""

    state_class = states.Skipped


class PAUSE(StateSignal):
    """Pause the task until it is approved."""

    state_class = states.Paused


class LOOP(StateSignal):
    """Run the task again with ``result`` as ``context['task_loop_result']``.

    Without a ``result`` the loop carries the signal's text, as in Prefect 1.
    """

    state_class = states.Looped

    def __init__(self, message: str | None = None, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("result", f"LOOP({message!r})")
        super().__init__(message, *args, **kwargs)


class ENDRUN(Signal):
    """End the task's run at once in ``state``: no retry, no further checks."""

    def __init__(self, state: states.State) -> None:
        super().__init__(state)
        self.state = state

    def __repr__(self) -> str:
        return f"ENDRUN({self.state!r})"


class TaskTimeoutSignal(Signal):
    """An attempt ran past its task's ``timeout``: the result of its ``TimedOut`` state.

    Not raised into user code: the runner records it at the deadline (as Prefect 1 does).
    """

    def __init__(self, message: str = "Execution timed out.") -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"TaskTimeoutSignal({self.message!r})"


SIGNAL_CLASSES: dict[str, type[Signal]] = {
    cls.__name__: cls
    for cls in (
        FAIL,
        TRIGGERFAIL,
        VALIDATIONFAIL,
        SUCCESS,
        RETRY,
        SKIP,
        PAUSE,
        LOOP,
        ENDRUN,
        TaskTimeoutSignal,
    )
}


def signal_from_state(state: states.State) -> type[StateSignal]:
    """The signal class that produces a state of ``state``'s class (Prefect 1's helper).

    >>> signal_from_state(states.Skipped()).__name__
    'SKIP'

    Raises:
        ValueError: no signal produces that state (``Pending``, ``Running``, ...).
    """
    pending = list(StateSignal.__subclasses__())
    by_state: dict[type[states.State], type[StateSignal]] = {}
    while pending:
        sig = pending.pop()
        by_state.setdefault(sig.state_class, sig)
        pending.extend(sig.__subclasses__())
    try:
        return by_state[type(state)]
    except KeyError:
        raise ValueError(f"No signal matches the provided state: {state!r}") from None
