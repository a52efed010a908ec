"""The event envelope: what a run's log is made of.

A store keeps one stream per run, each row a :class:`StoredEvent`: run id, sequence
number, lease epoch, hash of the previous event, kind, time and payload bytes. Stores
never look inside ``payload``; the core encodes and decodes it here.

The payload is a msgpack array whose first item is the schema version. The bodies:

=============  ============================================================================
kind           body
=============  ============================================================================
``run``        :class:`RunStarted`: flow name, recorded graph, parameters (secrets removed)
``state``      :class:`StateChanged`: entity (flow, or task key and map index), previous and
               new state, attempt, message, result, state extras
``log``        :class:`LogRecord`: a task's log line
``note``       :class:`Note`: warnings and audit notes (changed code, interruption, ...)
=============  ============================================================================

Each event carries ``prev_hash``, a keyed BLAKE2b of the previous event, so an edited log
is detected (``statecore verify``). With ``STATECORE_HMAC_KEY`` set the chain is a MAC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import blake2b as _blake2b
from typing import Any, Final, cast

from statecore.errors import CorruptEvent, SchemaVersionError
from statecore.serialization import packb, take_opened, unpackb

__all__ = [
    "SCHEMA_VERSION",
    "Body",
    "EventRow",
    "LogRecord",
    "Note",
    "RunStarted",
    "StateChanged",
    "StoredEvent",
    "chain_hash",
    "decode_body",
    "decode_payload",
    "encode_body",
    "encode_state_change",
    "make_event",
]

SCHEMA_VERSION = 1

KIND_RUN = "run"
KIND_STATE = "state"
KIND_LOG = "log"
KIND_NOTE = "note"


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of a run's stream, exactly as a store keeps it.

    Attributes:
        run_id: the run's id.
        seq: position in the run's stream, from 1, without gaps.
        epoch: the lease epoch (fencing token) of the driver that wrote it; 0 without lease.
        prev_hash: :func:`chain_hash` of the previous event (``b""`` for the first).
        kind: ``run``, ``state``, ``log`` or ``note``.
        ts: UTC time in integer nanoseconds.
        payload: msgpack bytes, decoded by :func:`decode_body`.
    """

    run_id: str
    seq: int
    epoch: int
    prev_hash: bytes
    kind: str
    ts: int
    payload: bytes


def chain_hash(event: StoredEvent, key: bytes | None = None) -> bytes:
    """The 16-byte hash that the next event stores as ``prev_hash``.

    With ``key`` it is a keyed BLAKE2b (a MAC): it cannot be recomputed without the key.
    """
    return chain_digest(
        hash_start(key or b""),
        event.prev_hash,
        event.run_id.encode(),
        event.seq,
        event.epoch,
        event.kind.encode(),
        event.ts,
        event.payload,
    )


def hash_start(key: bytes) -> Any:
    """A BLAKE2b hash keyed with ``key`` (``b""``: unkeyed), nothing hashed yet: what
    :func:`chain_digest` copies."""
    start = _hash_starts.get(key)
    if start is None:
        start = _hash_starts[key] = _blake2b(digest_size=16, key=key)
    return start


def chain_digest(
    start: Any,
    prev_hash: bytes,
    run_id: bytes,
    seq: int,
    epoch: int,
    kind: bytes,
    ts: int,
    payload: bytes,
) -> bytes:
    """:func:`chain_hash` from an event's fields, its text already UTF-8 (the journal's
    path: it keeps the run id's and the kinds' bytes and the start once per run)."""
    # a copy of the keyed start costs less than a new hash object (about 0.15 µs an
    # event), and one update of everything less than two
    h = start.copy()
    h.update(
        b"%s%s\x00%d\x00%d\x00%s\x00%d\x00%s" % (prev_hash, run_id, seq, epoch, kind, ts, payload)
    )
    digest: bytes = h.digest()
    return digest


#: a BLAKE2b hash, keyed, with nothing hashed yet, per key :func:`hash_start` was given
_hash_starts: dict[bytes, Any] = {}


@dataclass(frozen=True, slots=True)
class RunStarted:
    """The first event of a run: what was run, with what."""

    flow_name: str
    graph: dict[str, Any]
    parameters: dict[str, Any]
    parent_run: str | None = None
    kind: str = field(default=KIND_RUN, init=False)


@dataclass(frozen=True, slots=True)
class StateChanged:
    """A state change of the flow (``task is None``) or of a task or mapped child.

    ``extra`` holds the fields some states add: ``start_time`` (Scheduled),
    ``run_count`` (Retrying), ``loop_count`` (Looped), ``n_map_states`` (Mapped), the
    cache fields (Cached). ``result_stored`` is False when the result was not written
    (``checkpoint=False`` or a secret); replay then folds it to ``NOT_PERSISTED``.
    """

    task: str | None
    index: int | None
    prev: str
    new: str
    attempt: int
    message: str | None
    result: Any = None
    result_stored: bool = True
    extra: dict[str, Any] | None = None
    kind: str = field(default=KIND_STATE, init=False)


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A log line written by a task through ``context['logger']``."""

    task: str | None
    index: int | None
    level: str
    message: str
    kind: str = field(default=KIND_LOG, init=False)


@dataclass(frozen=True, slots=True)
class Note:
    """An audit note or warning: ``code`` says what (``code-changed``, ``cancel``, ...)."""

    code: str
    message: str
    data: dict[str, Any] | None = None
    kind: str = field(default=KIND_NOTE, init=False)


Body = RunStarted | StateChanged | LogRecord | Note

EventRow = tuple[int, str, int, bytes]
"""What replay folds of an event: ``(seq, kind, ts, payload)`` (see ``Store.scan``)."""


def encode_state_change(
    task: str | None,
    index: int | None,
    prev: str,
    new: str,
    attempt: int,
    message: str | None,
    result: Any,
    result_stored: bool,
    extra: dict[str, Any] | None,
) -> bytes:
    """The payload of a :class:`StateChanged`, from its fields (the runner's hot path)."""
    return packb(
        [
            SCHEMA_VERSION,
            task,
            index,
            prev,
            new,
            attempt,
            message,
            result if result_stored else None,
            result_stored,
            extra,
        ]
    )


def encode_body(body: Body) -> bytes:
    """Encode a body as payload bytes (raises SerializationError for unwritable results)."""
    if isinstance(body, StateChanged):
        return encode_state_change(
            body.task,
            body.index,
            body.prev,
            body.new,
            body.attempt,
            body.message,
            body.result,
            body.result_stored,
            body.extra,
        )
    if isinstance(body, RunStarted):
        return packb([SCHEMA_VERSION, body.flow_name, body.graph, body.parameters, body.parent_run])
    if isinstance(body, LogRecord):
        return packb([SCHEMA_VERSION, body.task, body.index, body.level, body.message])
    return packb([SCHEMA_VERSION, body.code, body.message, body.data])


def decode_body(event: StoredEvent) -> Body:
    """Decode an event's payload.

    Raises:
        SchemaVersionError: the event was written by a newer statecore.
        CorruptEvent: the payload cannot be decoded; names the run and sequence number.
    """
    return decode_payload(event.run_id, event.seq, event.kind, event.payload)


def decode_payload(run_id: str, seq: int, kind: str, payload: bytes) -> Body:
    """Decode the payload of the event ``seq`` of ``kind`` in run ``run_id``.

    What :func:`decode_body` does, for a reader that has the row's fields rather than a
    :class:`StoredEvent` (the replay loop reads rows).

    Raises:
        SchemaVersionError: the event was written by a newer statecore.
        CorruptEvent: the payload cannot be decoded; names the run and sequence number.
    """
    take_opened()
    try:
        items = unpackb(payload)
    except Exception as exc:
        raise CorruptEvent(
            f"run {run_id!r}, event {seq}: payload cannot be decoded ({_brief(exc)})"
        ) from None
    opened = take_opened()
    if type(items) is not list or not items:
        raise CorruptEvent(f"run {run_id!r}, event {seq}: payload is not an event body")
    version = items[0]
    if type(version) is not int or version > SCHEMA_VERSION or version < 1:
        raise SchemaVersionError(
            f"run {run_id!r}, event {seq}: written with event schema "
            f"{_brief(version)}, not one this statecore reads (its own is {SCHEMA_VERSION}); "
            "upgrade statecore if the log is newer"
        )
    shape = _SHAPES.get(kind)
    if shape is None:
        raise CorruptEvent(f"run {run_id!r}, event {seq}: unknown kind {_brief(kind)}")
    problem = _check(items, shape)
    if problem is not None:
        raise CorruptEvent(f"run {run_id!r}, event {seq}: malformed {kind!r} payload ({problem})")
    if opened:
        _check_sealed(run_id, seq, items if kind == KIND_STATE else None, opened)
    if kind == KIND_STATE:
        _, task, index, prev, new, attempt, message, result, stored, extra = items
        return StateChanged(task, index, prev, new, attempt, message, result, stored, extra)
    if kind == KIND_RUN:
        _, flow_name, graph, parameters, parent = items
        return RunStarted(flow_name, graph, parameters, parent)
    if kind == KIND_LOG:
        _, task, index, level, message = items
        return LogRecord(task, index, level, message)
    _, code, message, data = items
    return Note(code, message, data)


# Each body's fields: the types a field may have (None where it is optional), checked
# before a body is built, so a damaged or hostile payload is named, never folded.
_N = type(None)
_SHAPES: dict[str, tuple[tuple[type, ...], ...]] = {
    KIND_STATE: (
        (int,),
        (str, _N),
        (int, _N),
        (str,),
        (str,),
        (int,),
        (str, _N),
        (object,),
        (bool,),
        (dict, _N),
    ),
    KIND_RUN: ((int,), (str,), (dict,), (dict,), (str, _N)),
    KIND_LOG: ((int,), (str, _N), (int, _N), (str,), (str,)),
    KIND_NOTE: ((int,), (str,), (str,), (dict, _N)),
}
#: how deeply a payload may nest (a result, a graph, parameters): deeper is hostile, and
#: would exhaust the stack of whatever walks it (repr, JSON, rendering)
MAX_DEPTH = 100
#: the most children a mapped task may have: a run refuses to map over more (the task
#: fails), and a logged Mapped state declaring more is hostile (the fold would allocate a
#: TaskRun per declared child: 10**8 of them is gigabytes)
MAX_MAP_STATES = 1_000_000


def _check(items: list[Any], shape: tuple[tuple[type, ...], ...]) -> str | None:
    if len(items) != len(shape):
        return f"{len(items)} fields, not {len(shape)}"
    for n, (value, types) in enumerate(zip(items, shape, strict=True)):
        if object not in types and type(value) not in types:
            return f"field {n} is a {type(value).__name__}"
    if _too_deep(items):
        return f"nested deeper than {MAX_DEPTH}"
    if len(shape) == 5 and type(items[2]) is dict:  # a run: its graph's tasks
        return _check_graph(items[2])
    if len(shape) == 10 and type(items[9]) is dict and "n_map_states" in items[9]:
        n = items[9]["n_map_states"]
        if type(n) is not int or not 0 <= n <= MAX_MAP_STATES:
            return f"n_map_states {_brief(n)} is not a count from 0 to {MAX_MAP_STATES:,}"
    return None


def _check_sealed(
    run_id: str, seq: int, items: list[Any] | None, opened: list[tuple[Any, ...]]
) -> None:
    """Each decrypted value must have been sealed for the event it sits in: its result
    for ``(run, task, index, attempt, state)``, a Cached state's inputs for the same
    plus ``"cached_inputs"``. A sealed value moved to another event decrypts (its origin
    is authenticated, not its place): this is where the move is caught."""
    if items is not None:
        _, task, index, _, new, attempt = items[:6]
        mine = (run_id, task, index, attempt, new)
        if all(o == mine or o == (*mine, "cached_inputs") for o in opened):
            return
    where = next(o for o in opened if items is None or o[:5] != mine)
    raise CorruptEvent(
        f"run {run_id!r}, event {seq}: holds a sealed value written for "
        f"{_brief(list(where))}, not for this event (moved from another event?)"
    )


def _check_graph(graph: dict[Any, Any]) -> str | None:
    tasks = graph.get("tasks", [])
    if type(tasks) is not list:
        return "graph.tasks is not a list"
    for task in tasks:
        if type(task) is not dict or type(task.get("key")) is not str:
            return "a graph task has no key"
        if type(task.get("name")) is not str:
            return "a graph task's name is missing or not text"
    return None


def _too_deep(value: Any) -> bool:
    """True if ``value`` nests lists, tuples, sets or dicts deeper than MAX_DEPTH."""
    level = [value]
    for _ in range(MAX_DEPTH + 1):
        nxt: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                nxt.extend(item.keys())
                nxt.extend(item.values())
            elif isinstance(item, list | tuple | set | frozenset):
                nxt.extend(item)
        if not nxt:
            return False
        level = nxt
    return True


def _brief(value: Any) -> str:
    """A short, safe description of a hostile value (its repr may recurse or be huge)."""
    if isinstance(value, str | int | float | bool | bytes | BaseException) or value is None:
        try:
            text = repr(value) if not isinstance(value, BaseException) else str(value)
        except Exception:
            text = f"<{type(value).__name__}>"
        return text if len(text) <= 80 else text[:77] + "..."
    return f"a {type(value).__name__}"


class _FastStoredEvent:
    """Builds :class:`StoredEvent` about three times faster (stores' reads, the journal).

    ``StoredEvent`` is a frozen dataclass, whose ``__init__`` sets every field through
    ``object.__setattr__``; on a long stream that dominates a read, and it is a visible
    share of the runner's cost per event. This class has the
    same slots, fills them with plain assignments and then becomes a ``StoredEvent``
    (same layout, so CPython allows the class change). :func:`_pick_event_factory`
    checks that at import time and falls back to ``StoredEvent`` itself if not.
    """

    __slots__ = ("epoch", "kind", "payload", "prev_hash", "run_id", "seq", "ts")

    def __init__(
        self,
        run_id: str,
        seq: int,
        epoch: int,
        prev_hash: bytes,
        kind: str,
        ts: int,
        payload: bytes,
    ) -> None:
        self.run_id = run_id
        self.seq = seq
        self.epoch = epoch
        self.prev_hash = prev_hash
        self.kind = kind
        self.ts = ts
        self.payload = payload
        self.__class__ = StoredEvent  # type: ignore[assignment]


_EventFactory = Callable[[str, int, int, bytes, str, int, bytes], StoredEvent]


def _pick_event_factory() -> _EventFactory:
    names = sorted(field.name for field in dataclasses.fields(StoredEvent))
    if names != sorted(_FastStoredEvent.__slots__):
        return StoredEvent
    probe_fields = ("r", 1, 2, b"h", "k", 3, b"p")
    try:
        probe: object = _FastStoredEvent(*probe_fields)
    except TypeError:  # the layouts differ after all
        return StoredEvent
    if type(probe) is not StoredEvent or probe != StoredEvent(*probe_fields):
        return StoredEvent
    return cast(_EventFactory, _FastStoredEvent)


make_event: Final = _pick_event_factory()
"""``make_event(run_id, seq, epoch, prev_hash, kind, ts, payload)``: a :class:`StoredEvent`,
built the fast way where CPython allows it."""
