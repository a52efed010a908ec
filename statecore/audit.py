"""Audit a run's log: verify its hash chain, export it, read its task logs.

Verifying
    Every event stores ``prev_hash``, the :func:`~statecore.events.chain_hash` of the
    event before it in the run's stream (``b""`` for the first). :func:`verify_chain`
    recomputes each link and names the first one that does not hold. Editing any byte of
    an event (its payload, time, kind, epoch) breaks the link from that event to the
    next one; deleting or inserting an event breaks the numbering. An edit of the *last*
    event has no next link to break: compare the head hash (:attr:`Verification.head`,
    the hash the next event would store) with a copy kept elsewhere to catch that.
    With ``STATECORE_HMAC_KEY`` set, links are keyed BLAKE2b MACs: someone who can edit
    the file but does not know the key cannot recompute them.

Exporting
    :func:`export_records` turns each event into one JSON object (``statecore export``
    writes one per line). Every object has the envelope fields

    ==============  ===============================================================
    ``run_id``      the run's id
    ``seq``         sequence number in the run's stream, from 1
    ``ts``          UTC time in integer nanoseconds
    ``ts_iso``      the same time as ISO 8601 UTC, to the nanosecond
    ``epoch``       the lease epoch (fencing token) of the writer; 0 without lease
    ``kind``        ``run``, ``state``, ``log`` or ``note``
    ``prev_hash``   hex of the previous event's chain hash (``""`` for the first)
    ==============  ===============================================================

    and the decoded body's fields:

    * ``run``: ``flow_name``, ``graph`` (task keys, names, edges, reference and terminal
      tasks, fingerprint, code hashes), ``parameters``, ``parent_run``.
    * ``state``: ``task`` (key, null for the flow), ``index`` (map index or null),
      ``prev`` and ``new`` (state names), ``attempt``, ``message``, ``result``,
      ``result_stored`` (false: the result was never written, e.g. ``checkpoint=False``
      or a secret, and ``result`` is null), ``extra`` (fields some states add:
      ``start_time``, ``run_count``, ``loop_count``, ``n_map_states``, cache fields).
    * ``log``: ``task``, ``index``, ``level``, ``message``.
    * ``note``: ``code`` (``code-changed``, ``rehydrate``, ...), ``message``, ``data``.
    * an event that cannot be decoded (``statecore export`` keeps it): ``damaged`` (why)
      and ``payload_hex`` (the stored bytes), instead of the body's fields.

    Values that JSON has (null, booleans, integers, finite floats, strings, lists, and
    dicts with string keys) are written as they are; anything else (tuples, sets,
    datetimes, exceptions, bytes, NaN, dict keys that are not strings) as its ``repr``
    string, so every line is valid JSON and nothing is silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from statecore.errors import CorruptEvent
from statecore.events import (
    LogRecord,
    Note,
    RunStarted,
    StateChanged,
    StoredEvent,
    chain_hash,
    decode_body,
)
from statecore.fold import RunView

__all__ = [
    "LogLine",
    "Verification",
    "export_records",
    "iso_time",
    "json_safe",
    "log_lines",
    "verify_chain",
]


@dataclass(frozen=True, slots=True)
class Verification:
    """What :func:`verify_chain` found.

    Attributes:
        run_id: the run.
        events: how many events were checked.
        head: the head hash (hex): the chain hash of the last event, which the next event
            would store. Keep it elsewhere to detect a later edit of the tail.
        keyed: the chain was checked with an HMAC key.
        broken_at: sequence number of the first event whose link does not hold, or None.
        reason: why that link does not hold.
        all_links_fail: every link fails; usually the wrong key (or none) rather than
            edits.
    """

    run_id: str
    events: int
    head: str
    keyed: bool
    broken_at: int | None = None
    reason: str = ""
    all_links_fail: bool = False

    @property
    def ok(self) -> bool:
        """True when every link holds."""
        return self.broken_at is None


def verify_chain(
    run_id: str, events: Sequence[StoredEvent], key: bytes | None = None
) -> Verification:
    """Recompute a run's hash chain and name the first broken link.

    Args:
        run_id: the run the events belong to.
        events: the run's whole stream in order.
        key: the HMAC key the chain was written with (``STATECORE_HMAC_KEY``), if any.

    Returns:
        A :class:`Verification`; ``broken_at`` is None when the chain holds.
    """
    broken_at: int | None = None
    reason = ""
    failures = 0
    previous: StoredEvent | None = None
    expected_seq = 1
    for event in events:
        problem = ""
        if event.run_id != run_id:
            problem = f"event {event.seq} belongs to run {event.run_id!r}"
        elif event.seq != expected_seq:
            problem = (
                f"event {event.seq} follows event {expected_seq - 1}: "
                f"events were removed or inserted"
            )
        elif previous is None:
            if event.prev_hash != b"":
                problem = "event 1 has a prev_hash, but the first event of a run has none"
        elif event.prev_hash != chain_hash(previous, key):
            failures += 1
            problem = (
                f"event {event.seq}'s prev_hash does not match event {previous.seq}: "
                f"event {previous.seq} was altered (or event {event.seq}'s prev_hash was)"
            )
        if problem and broken_at is None:
            broken_at, reason = event.seq, problem
        previous = event
        expected_seq = event.seq + 1
    head = chain_hash(previous, key).hex() if previous is not None else ""
    links = max(len(events) - 1, 0)
    return Verification(
        run_id,
        len(events),
        head,
        key is not None,
        broken_at,
        reason,
        all_links_fail=links > 1 and failures == links,
    )


def iso_time(ts: int) -> str:
    """UTC nanoseconds as ISO 8601 with all nine fraction digits (exact, no rounding).

    Example:
        >>> iso_time(1_700_000_000_123_456_789)
        '2023-11-14T22:13:20.123456789Z'
    """
    seconds, nanos = divmod(ts, 1_000_000_000)
    whole = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{nanos:09d}Z"


def json_safe(value: Any) -> Any:
    """``value`` with everything JSON cannot hold replaced by its ``repr``.

    Example:
        >>> json_safe({"a": (1, 2), "b": [1.5, float("nan")], 3: None})
        {'a': '(1, 2)', 'b': [1.5, 'nan'], '3': None}
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if type(value) is list:
        return [json_safe(v) for v in value]
    if type(value) is dict:
        return {(k if isinstance(k, str) else repr(k)): json_safe(v) for k, v in value.items()}
    return repr(value)


def export_records(
    events: Iterable[StoredEvent], *, keep_damaged: bool = False
) -> Iterator[dict[str, Any]]:
    """One JSON-safe dict per event (the schema is in this module's docstring).

    With ``keep_damaged``, an event that cannot be decoded is exported as it is stored
    (``payload_hex``) with the reason in ``damaged``, and the events after it follow:
    a damaged log never hides its readable part.

    Raises:
        CorruptEvent: an event cannot be decoded (the message names its seq), unless
            ``keep_damaged``.
    """
    for event in events:
        record: dict[str, Any] = {
            "run_id": event.run_id,
            "seq": event.seq,
            "ts": event.ts,
            "ts_iso": iso_time(event.ts),
            "epoch": event.epoch,
            "kind": event.kind,
            "prev_hash": event.prev_hash.hex(),
        }
        try:
            body = decode_body(event)
        except CorruptEvent as exc:
            if not keep_damaged:
                raise
            record.update(damaged=str(exc), payload_hex=event.payload.hex())
            yield record
            continue
        if isinstance(body, StateChanged):
            record.update(
                task=body.task,
                index=body.index,
                prev=body.prev,
                new=body.new,
                attempt=body.attempt,
                message=body.message,
                result=json_safe(body.result) if body.result_stored else None,
                result_stored=body.result_stored,
                extra=json_safe(body.extra),
            )
        elif isinstance(body, RunStarted):
            record.update(
                flow_name=body.flow_name,
                graph=json_safe(body.graph),
                parameters=json_safe(body.parameters),
                parent_run=body.parent_run,
            )
        elif isinstance(body, LogRecord):
            record.update(task=body.task, index=body.index, level=body.level, message=body.message)
        elif isinstance(body, Note):
            record.update(code=body.code, message=body.message, data=json_safe(body.data))
        yield record


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of ``statecore logs``: a task's log record or a run note.

    Attributes:
        ts: UTC nanoseconds.
        level: ``DEBUG`` ... ``ERROR`` for task logs, ``NOTE`` for run notes.
        source: ``name[i]`` of the task, ``note:<code>`` for notes, ``flow`` otherwise.
        message: the text.
    """

    ts: int
    level: str
    source: str
    message: str


def log_lines(view: RunView, *, notes: bool = True) -> list[LogLine]:
    """The run's task log records (and, with ``notes``, its notes) in time order."""
    names = {t["key"]: t["name"] for t in view.graph.get("tasks", [])}
    lines: list[LogLine] = []
    for ts, record in view.logs:
        if record.task is None:
            source = "flow"
        else:
            source = names.get(record.task, record.task)
            if record.index is not None:
                source = f"{source}[{record.index}]"
        lines.append(LogLine(ts, record.level, source, record.message))
    if notes:
        for ts, note in view.notes:
            lines.append(LogLine(ts, "NOTE", f"note:{note.code}", note.message))
    lines.sort(key=lambda line: line.ts)
    return lines
