"""Task and flow states, with Prefect Core 1.x's class tree and predicates.

The tree::

    State
    ├── Pending
    │   └── Scheduled
    │       ├── Paused
    │       ├── Resume
    │       └── Retrying
    ├── Running
    └── Finished
        ├── Success
        │   ├── Cached
        │   ├── Mapped
        │   └── Skipped
        ├── Failed
        │   ├── TriggerFailed
        │   ├── ValidationFailed
        │   └── TimedOut
        ├── Cancelled
        └── Looped

Predicates are ``isinstance`` checks against this tree, exactly as in Prefect 1, so
``Skipped().is_successful()`` and ``TriggerFailed().is_failed()`` are both true.

Example:
    >>> from statecore import states
    >>> s = states.Skipped("nothing to do")
    >>> (s.is_successful(), s.is_skipped(), s.is_failed())
    (True, True, False)
    >>> states.Success(result=1) == states.Success(result=1)
    True
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar

__all__ = [
    "Cached",
    "Cancelled",
    "Failed",
    "Finished",
    "Looped",
    "Mapped",
    "NOT_PERSISTED",
    "NotPersisted",
    "Paused",
    "Pending",
    "Resume",
    "Retrying",
    "Running",
    "Scheduled",
    "Skipped",
    "State",
    "Success",
    "TimedOut",
    "TriggerFailed",
    "ValidationFailed",
    "STATE_CLASSES",
    "state_class",
]


class NotPersisted:
    """The result of a state whose value was never written to the log.

    Tasks with ``checkpoint=False`` and secrets fold to this marker on replay.
    """

    _instance: NotPersisted | None = None

    def __new__(cls) -> NotPersisted:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NotPersisted"

    def __reduce__(self) -> str:
        return "NOT_PERSISTED"


NOT_PERSISTED = NotPersisted()


def results_equal(a: Any, b: Any) -> bool:
    """Compare two results; exceptions and signals compare by type and arguments."""
    if isinstance(a, BaseException) or isinstance(b, BaseException):
        return type(a) is type(b) and _exc_args(a) == _exc_args(b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(results_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(results_equal(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except Exception:
        return a is b


def _exc_args(exc: BaseException) -> tuple[Any, ...]:
    args = getattr(exc, "args", ())
    return tuple(args)


class _Annotations:
    """The slots of Prefect 1's ``context`` and ``cached_inputs`` (see :class:`State`).

    Unset until used, so the fold's fast path (``codec.make_plain``) leaves them alone."""

    __slots__ = ("_cached_inputs", "_context")
    _context: dict[str, Any]
    _cached_inputs: dict[str, Any]


_fields_cache: dict[type, tuple[str, ...]] = {}


def _fields_of(cls: type) -> tuple[str, ...]:
    """The slots a state class adds to message and result (its logged fields)."""
    fields = _fields_cache.get(cls)
    if fields is None:
        names = [
            name
            for klass in reversed(cls.__mro__)
            if klass is not _Annotations
            for name in klass.__dict__.get("__slots__", ())
            if name not in ("message", "result", "run_id")
        ]
        fields = _fields_cache[cls] = tuple(dict.fromkeys(names))
    return fields


class State(_Annotations):
    """Base class of every state.

    Args:
        message: a human-readable explanation of the state.
        result: the value the state carries (a task's return value, an exception, ...).
        context: Prefect 1's ``state.context``, a dict of annotations (default empty).
        cached_inputs: Prefect 1's ``state.cached_inputs`` (default empty; a
            :class:`Cached` state's own ``cached_inputs`` is what the cache uses).

    ``context`` and ``cached_inputs`` are in-memory annotations: as in Prefect 1 they do
    not take part in equality, and the log does not keep them (a replayed state equals
    the live one field for field without them).
    """

    __slots__ = ("message", "result", "run_id")

    #: the state's colour (Prefect 1's palette), e.g. for a UI
    color: ClassVar[str] = "#696969"

    def __init__(
        self,
        message: str | None = None,
        result: Any = None,
        *,
        context: dict[str, Any] | None = None,
        cached_inputs: dict[str, Any] | None = None,
    ) -> None:
        self.message = message
        self.result = result
        self.run_id: str | None = None
        if context:
            self._context = dict(context)
        if cached_inputs:
            self._cached_inputs = dict(cached_inputs)

    @property
    def context(self) -> dict[str, Any]:
        """Prefect 1's ``state.context``: a dict of annotations (created empty on first use)."""
        try:
            return self._context
        except AttributeError:
            self._context = {}
            return self._context

    @context.setter
    def context(self, value: dict[str, Any] | None) -> None:
        self._context = dict(value or {})

    @property
    def cached_inputs(self) -> dict[str, Any]:
        """Prefect 1's ``state.cached_inputs`` (created empty on first use)."""
        try:
            return self._cached_inputs
        except AttributeError:
            self._cached_inputs = {}
            return self._cached_inputs

    @cached_inputs.setter
    def cached_inputs(self, value: dict[str, Any] | None) -> None:
        self._cached_inputs = dict(value or {})

    @classmethod
    def children(cls, include_self: bool = False, names_only: bool = False) -> list[Any]:
        """Every state class below this one (Prefect 1's ``State.children``).

        Args:
            include_self: also list this class (last).
            names_only: list class names instead of classes.
        """
        found: list[type[State]] = []
        for sub in cls.__subclasses__():
            if not sub.__name__.startswith("_"):
                found.append(sub)
            found.extend(sub.children())
        if include_self:
            found.append(cls)
        return [c.__name__ for c in found] if names_only else found

    @classmethod
    def parents(cls, include_self: bool = False, names_only: bool = False) -> list[Any]:
        """Every state class above this one, nearest first (Prefect 1's ``State.parents``).

        Args:
            include_self: also list this class (last).
            names_only: list class names instead of classes.
        """
        found: list[type[State]] = [
            c
            for c in cls.__mro__
            if c is not cls
            and isinstance(c, type)
            and issubclass(c, State)
            and not c.__name__.startswith("_")
        ]
        if include_self:
            found.append(cls)
        return [c.__name__ for c in found] if names_only else found

    @property
    def name(self) -> str:
        """The state's class name, e.g. ``"Success"``."""
        return type(self).__name__

    def __repr__(self) -> str:
        if self.message:
            return f'<{self.name}: "{self.message}">'
        return f"<{self.name}>"

    def __eq__(self, other: object) -> bool:
        """Same class, message, result and fields of that class (``start_time``,
        ``run_count``, ``loop_count``, a Cached state's inputs, ...): everything the log
        keeps of a state. The in-memory annotations (``context``, ``cached_inputs``) and
        the run id do not count."""
        if type(self) is not type(other):
            return NotImplemented if not isinstance(other, State) else False
        assert isinstance(other, State)
        return (
            self.message == other.message
            and results_equal(self.result, other.result)
            and all(
                results_equal(getattr(self, name, None), getattr(other, name, None))
                for name in _fields_of(type(self))
            )
        )

    __hash__ = object.__hash__

    def __sizeof__(self) -> int:
        """The state's own size plus its result's (as Prefect 1's)."""
        return super().__sizeof__() + sys.getsizeof(self.result, 0)

    def is_pending(self) -> bool:
        """True for Pending and its subclasses (Scheduled, Paused, Resume, Retrying)."""
        return isinstance(self, Pending)

    def is_scheduled(self) -> bool:
        """True for Scheduled and its subclasses."""
        return isinstance(self, Scheduled)

    def is_retrying(self) -> bool:
        """True for Retrying."""
        return isinstance(self, Retrying)

    def is_paused(self) -> bool:
        """True for Paused."""
        return isinstance(self, Paused)

    def is_resume(self) -> bool:
        """True for Resume."""
        return isinstance(self, Resume)

    def is_running(self) -> bool:
        """True for Running."""
        return isinstance(self, Running)

    def is_finished(self) -> bool:
        """True for Finished and its subclasses."""
        return isinstance(self, Finished)

    def is_successful(self) -> bool:
        """True for Success and its subclasses (Cached, Mapped, Skipped)."""
        return isinstance(self, Success)

    def is_failed(self) -> bool:
        """True for Failed and its subclasses (TriggerFailed, TimedOut, ...)."""
        return isinstance(self, Failed)

    def is_skipped(self) -> bool:
        """True for Skipped."""
        return isinstance(self, Skipped)

    def is_mapped(self) -> bool:
        """True for Mapped."""
        return isinstance(self, Mapped)

    def is_cached(self) -> bool:
        """True for Cached."""
        return isinstance(self, Cached)

    def is_looped(self) -> bool:
        """True for Looped."""
        return isinstance(self, Looped)

    def is_cancelled(self) -> bool:
        """True for Cancelled."""
        return isinstance(self, Cancelled)


class Pending(State):
    """Not yet run."""

    __slots__ = ()
    color: ClassVar[str] = "#7ebdff"


class Scheduled(Pending):
    """Waiting until ``start_time`` (UTC integer nanoseconds, or None for 'not set')."""

    __slots__ = ("start_time",)
    color: ClassVar[str] = "#ffab00"

    def __init__(
        self,
        message: str | None = None,
        result: Any = None,
        start_time: int | None = None,
        *,
        context: dict[str, Any] | None = None,
        cached_inputs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, result, context=context, cached_inputs=cached_inputs)
        self.start_time = start_time


class Paused(Scheduled):
    """Waiting for approval (``resume(..., approve=[task])``)."""

    __slots__ = ()
    color: ClassVar[str] = "#99a8e8"


class Resume(Scheduled):
    """Approved after a pause; runs on the next pass."""

    __slots__ = ()
    color: ClassVar[str] = "#f58c0c"


class Retrying(Scheduled):
    """Failed, to be run again at ``start_time``; ``run_count`` attempts so far."""

    __slots__ = ("run_count",)
    color: ClassVar[str] = "#f66a0a"

    def __init__(
        self,
        message: str | None = None,
        result: Any = None,
        start_time: int | None = None,
        run_count: int = 1,
        *,
        context: dict[str, Any] | None = None,
        cached_inputs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, result, start_time, context=context, cached_inputs=cached_inputs)
        self.run_count = run_count


class Running(State):
    """Running now."""

    __slots__ = ()
    color: ClassVar[str] = "#3d67ff"


class Finished(State):
    """Base class of every finished state."""

    __slots__ = ()
    color: ClassVar[str] = "#003ccb"


class Success(Finished):
    """Finished successfully."""

    __slots__ = ()
    color: ClassVar[str] = "#28a745"


class Cached(Success):
    """Success restored from (or stored into) the cache."""

    __slots__ = ("cached_inputs", "cached_parameters", "cached_result_expiration")
    color: ClassVar[str] = "#34d058"

    def __init__(
        self,
        message: str | None = None,
        result: Any = None,
        cached_inputs: dict[str, Any] | None = None,
        cached_parameters: dict[str, Any] | None = None,
        cached_result_expiration: int | None = None,
        *,
        context: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, result, context=context)
        self.cached_inputs = cached_inputs
        self.cached_parameters = cached_parameters
        self.cached_result_expiration = cached_result_expiration


class Mapped(Success):
    """A mapped task's own state; its children are in ``map_states``.

    ``result`` is the list of the children's results.
    """

    __slots__ = ("_n_map_states", "map_states")
    color: ClassVar[str] = "#003ccb"

    def __init__(
        self,
        message: str | None = None,
        result: Any = None,
        map_states: list[State] | None = None,
        n_map_states: int | None = None,
        *,
        context: dict[str, Any] | None = None,
        cached_inputs: dict[str, Any] | None = None,
    ) -> None:
        self.map_states: list[State] = list(map_states or [])
        self._n_map_states = n_map_states
        if result is None and map_states is not None:
            result = [s.result if isinstance(s, State) else None for s in self.map_states]
        super().__init__(message, result, context=context, cached_inputs=cached_inputs)

    @property
    def n_map_states(self) -> int:
        """How many children the task has."""
        if self._n_map_states is not None:
            return self._n_map_states
        return len(self.map_states)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapped) or type(other) is not type(self):
            return super().__eq__(other)
        return self.message == other.message and self.map_states == other.map_states


class Skipped(Success):
    """Skipped: counts as a success."""

    __slots__ = ()
    color: ClassVar[str] = "#62757f"


class Failed(Finished):
    """Finished with a failure."""

    __slots__ = ()
    color: ClassVar[str] = "#eb0000"


class TriggerFailed(Failed):
    """The task's trigger did not pass."""

    __slots__ = ()
    color: ClassVar[str] = "#ff5131"


class ValidationFailed(Failed):
    """The task's result failed validation."""

    __slots__ = ()
    color: ClassVar[str] = "#ff5131"


class TimedOut(Failed):
    """The task ran past its timeout."""

    __slots__ = ()
    color: ClassVar[str] = "#ff4e33"


class Cancelled(Finished):
    """Finished without success or failure: the run was cancelled."""

    __slots__ = ()
    color: ClassVar[str] = "#bdbdbd"


class Looped(Finished):
    """One iteration of a looping task finished; ``loop_count`` iterations so far."""

    __slots__ = ("loop_count",)
    color: ClassVar[str] = "#003ccb"

    def __init__(
        self,
        message: str | None = None,
        result: Any = None,
        loop_count: int = 1,
        *,
        context: dict[str, Any] | None = None,
        cached_inputs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, result, context=context, cached_inputs=cached_inputs)
        self.loop_count = loop_count


STATE_CLASSES: dict[str, type[State]] = {
    cls.__name__: cls
    for cls in (
        State,
        Pending,
        Scheduled,
        Paused,
        Resume,
        Retrying,
        Running,
        Finished,
        Success,
        Cached,
        Mapped,
        Skipped,
        Failed,
        TriggerFailed,
        ValidationFailed,
        TimedOut,
        Cancelled,
        Looped,
    )
}


def state_class(name: str) -> type[State]:
    """Return the state class called ``name``.

    Raises:
        UnknownState: if there is no such state.
    """
    try:
        return STATE_CLASSES[name]
    except KeyError:
        from statecore.errors import UnknownState

        raise UnknownState(
            f"unknown state name {name!r}; known states: {', '.join(sorted(STATE_CLASSES))}"
        ) from None
