"""How the Redis store writes text and reads back stream entries and run metadata.

Strings are stored as UTF-8 with lone surrogates passed through, so any Python ``str``
round-trips. Stream entries are read as the raw arrays XRANGE returns (the store turns
redis-py's dict-building callback off with :func:`as_is`) and decoded here; anything
malformed raises :class:`~statecore.errors.CorruptEvent`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from statecore.backends.base import RunMeta
from statecore.errors import CorruptEvent
from statecore.events import EventRow, StoredEvent, make_event

_KINDS: dict[bytes, str] = {b"run": "run", b"state": "state", b"log": "log", b"note": "note"}


def utf8(text: str) -> bytes:
    # Python strings may hold lone surrogates; they round-trip instead of failing.
    return text.encode("utf-8", "surrogatepass")


def pack_events(events: Sequence[StoredEvent]) -> bytes:
    """The append script's one argument for ``events``: each event's header (the lengths
    of its epoch, prev_hash, kind, ts and payload, 4 bytes each, big-endian) and those
    fields, as the stream entry stores them (numbers in decimal, text in UTF-8)."""
    parts: list[bytes] = []
    kinds = _KIND_BYTES
    header = _HEADER.pack
    for e in events:
        epoch, ts = b"%d" % e.epoch, b"%d" % e.ts
        kind = kinds.get(e.kind) or utf8(e.kind)
        h, payload = e.prev_hash, e.payload
        parts += (header(len(epoch), len(h), len(kind), len(ts), len(payload)), epoch, h)
        parts += (kind, ts, payload)
    return b"".join(parts)


_KIND_BYTES: dict[str, bytes] = {name: raw for raw, name in _KINDS.items()}
# a Redis string is at most 512 MB: a length always fits 4 bytes
_HEADER = struct.Struct(">5I")


def text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


def _decode_entry(run_id: str, entry: Any) -> StoredEvent:
    entry_id, (_, epoch, _, prev_hash, _, kind, _, ts, _, payload) = entry
    name = _KINDS.get(kind) or text(kind)
    return StoredEvent(run_id, int(entry_id[2:]), int(epoch), prev_hash, name, int(ts), payload)


def decode_entries(run_id: str, entries: list[Any], first: int) -> list[StoredEvent]:
    """Raw XRANGE entries ``[id, [e, epoch, h, prev, k, kind, t, ts, p, payload]]``.

    Ids are increasing, so when the first is ``0-first`` and the last ``0-(first+n-1)``
    the sequence numbers are ``first, first+1, ...`` and need not be parsed one by one.
    """
    kinds, last = _KINDS, first + len(entries) - 1
    try:
        if entries and entries[0][0] == b"0-%d" % first and entries[-1][0] == b"0-%d" % last:
            return [
                make_event(run_id, seq, int(e), h, kinds.get(k) or text(k), int(t), p)
                for seq, (_, (_, e, _, h, _, k, _, t, _, p)) in enumerate(entries, first)
            ]
        return [_decode_entry(run_id, entry) for entry in entries]
    except (ValueError, TypeError) as exc:
        for entry in entries:
            try:
                _decode_entry(run_id, entry)
            except (ValueError, TypeError) as bad:
                raise CorruptEvent(
                    f"run {run_id!r}, stream entry {entry[0]!r}: malformed ({bad})"
                ) from bad
        raise CorruptEvent(f"run {run_id!r}: malformed stream entries ({exc})") from exc


def decode_rows(run_id: str, entries: list[Any], first: int) -> list[EventRow]:
    """The same entries as :func:`decode_entries`, as replay's ``(seq, kind, ts, payload)``
    rows: the epoch and hash fields are skipped, not decoded."""
    kinds, last = _KINDS, first + len(entries) - 1
    if entries and entries[0][0] == b"0-%d" % first and entries[-1][0] == b"0-%d" % last:
        try:
            return [
                (seq, kinds.get(k) or text(k), int(t), p)
                for seq, (_, (_, _, _, _, _, k, _, t, _, p)) in enumerate(entries, first)
            ]
        except (ValueError, TypeError):
            pass  # decode_entries names the malformed entry
    return [(e.seq, e.kind, e.ts, e.payload) for e in decode_entries(run_id, entries, first)]


def meta_from_hash(fields: Mapping[bytes, bytes]) -> RunMeta | None:
    if b"flow_name" not in fields:
        return None
    try:
        ended, parent = fields.get(b"ended"), fields.get(b"parent_run")
        return RunMeta(
            run_id=text(fields[b"run_id"]),
            flow_name=text(fields[b"flow_name"]),
            state=text(fields[b"state"]),
            started=int(fields[b"started"]),
            ended=None if ended is None else int(ended),
            head=int(fields.get(b"head", b"0")),
            parent_run=None if parent is None else text(parent),
        )
    except (KeyError, ValueError) as exc:
        raise CorruptEvent(f"malformed run metadata {dict(fields)!r} ({exc!r})") from exc


def as_is(response: Any, **_: Any) -> Any:
    """A redis-py response callback that hands the raw reply back unchanged."""
    return response
