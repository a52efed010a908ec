"""The State <-> event codec: the one place a State becomes fields and fields a State.

A state change is written as its class name, message, result and ``extra``: every slot
the class has beyond message and result (a retry's ``start_time`` and ``run_count``, a
Cached state's inputs, parameters and expiration, a loop's count, a mapped task's number
of children), so whatever a decision reads from a State survives the log by
construction, not by a list kept in step with the classes. The fold (replay and the live
run alike), the serializer (a State inside a result) and the tests all build States here.

The event's ``extra`` may also carry the attempt's measured ``started_at``/``ended_at``;
keys that are not slots of the class are ignored when a State is built, so a newer
statecore's extras do not break an older reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statecore.states import (
    NOT_PERSISTED,
    Cancelled,
    Failed,
    Mapped,
    Pending,
    Running,
    Skipped,
    State,
    Success,
    TimedOut,
    TriggerFailed,
    _Annotations,
    state_class,
)

__all__ = ["PLAIN", "PLAIN_BY_NAME", "build_state", "make_plain", "slots_of", "state_extra"]

#: states whose events need no extra fields (checked by exact type: the hot path)
PLAIN: frozenset[type[State]] = frozenset(
    {Pending, Running, Success, Failed, Skipped, TriggerFailed, TimedOut, Cancelled}
)
PLAIN_BY_NAME: dict[str, type[State]] = {cls.__name__: cls for cls in PLAIN}
# not written with a state change: a view's states have no run id, and a mapped task's
# children are events of their own
_NOT_EXTRA = frozenset({"message", "result", "run_id", "map_states", "_n_map_states"})
_slots_cache: dict[type[State], tuple[str, ...]] = {}
_new = object.__new__


def slots_of(cls: type[State]) -> tuple[str, ...]:
    """Every slot of a state class that a state change can carry, ``message`` and
    ``result`` first; the in-memory annotations (``context``, ``cached_inputs`` of the
    base class) are not among them."""
    slots = _slots_cache.get(cls)
    if slots is None:
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            if klass is _Annotations:
                continue
            declared = klass.__dict__.get("__slots__", ())
            names.extend([declared] if isinstance(declared, str) else declared)
        slots = _slots_cache[cls] = tuple(dict.fromkeys(names))
    return slots


def state_extra(state: State) -> dict[str, Any] | None:
    """The fields beyond message and result that an event keeps for ``state``."""
    kind = type(state)
    if kind in PLAIN:
        return None
    extra = {
        name: getattr(state, name)
        for name in slots_of(kind)
        if name not in _NOT_EXTRA and hasattr(state, name)
    }
    if isinstance(state, Mapped):
        extra["n_map_states"] = state.n_map_states
    return extra or None


def build_state(
    name: str, message: str | None, result: Any, extra: Mapping[str, Any] | None
) -> State:
    """The State an event records, from its class name, message, result and extras.

    Raises:
        UnknownState: no state class has that name.
    """
    plain = PLAIN_BY_NAME.get(name)
    if plain is not None:
        return make_plain(plain, message, result)
    cls = state_class(name)
    if cls is Mapped:
        count = extra.get("n_map_states", 0) if extra else 0
        return Mapped(message, result, n_map_states=count)
    state = cls(message, result)  # every slot at its default
    if extra:
        slots = slots_of(cls)
        for slot, value in extra.items():
            if slot in slots and slot not in _NOT_EXTRA:
                setattr(state, slot, value)
    return state


def make_plain(cls: type[State], message: str | None, result: Any) -> State:
    """``cls(message, result)`` for a class of :data:`PLAIN`, made without the class call
    (a third cheaper in CPython 3.11; the fold makes one per event). Sound while those
    classes keep the slots and ``__init__`` of :class:`State` (tests/core/test_fold.py checks)."""
    state = _new(cls)
    state.message = message
    state.result = result
    state.run_id = None
    return state


def stored_result(result: Any, stored: bool) -> Any:
    """An event's result as a State holds it: ``NOT_PERSISTED`` when it was not stored."""
    return result if stored else NOT_PERSISTED
