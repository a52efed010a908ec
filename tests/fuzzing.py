"""Hostile logs for fuzzing the readers (CLI commands, replay, the UI).

:func:`payloads` yields mutated event payloads (bit flips, truncation, extension, type
confusion, huge declared lengths, deep nesting, unhashable names, a non-list
``graph.tasks``, a huge ``n_map_states``, bytes where text goes, terminal escapes);
:func:`hostile_log` turns one into a run's events, valid around it, that a test appends
to a real store. Any reader can be fuzzed with it: ``for case in cases(seed, n): ...``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from statecore.events import SCHEMA_VERSION, StoredEvent, chain_hash, make_event
from statecore.serialization import packb

__all__ = ["FuzzCase", "cases", "hostile_log", "payloads"]

V = SCHEMA_VERSION
GRAPH = {"tasks": [{"key": "a-1", "name": "a"}, {"key": "m-2", "name": "m"}], "edges": []}


def _good() -> list[tuple[str, list[Any]]]:
    """A small valid log's bodies: run, starts, a map, log lines, a note, the end."""
    return [
        ("run", [V, "flow", GRAPH, {"x": 1}, None]),
        ("state", [V, None, None, "Pending", "Running", 0, "Running flow.", None, True, None]),
        ("state", [V, "a-1", None, "Pending", "Running", 1, "Starting", None, True, None]),
        ("state", [V, "a-1", None, "Running", "Success", 1, "ok", 42, True, None]),
        (
            "state",
            [V, "m-2", None, "Pending", "Mapped", 1, "mapped", None, True, {"n_map_states": 2}],
        ),
        ("state", [V, "m-2", 0, "Pending", "Running", 1, "go", None, True, None]),
        ("state", [V, "m-2", 0, "Running", "Failed", 1, "boom", None, True, None]),
        ("log", [V, "a-1", None, "INFO", "hello"]),
        ("note", [V, "code-changed", "a note", {"k": "v"}]),
        ("state", [V, None, None, "Running", "Failed", 0, "Some failed.", None, True, None]),
    ]


_WEIRD: list[Any] = [
    None,
    True,
    -1,
    2**63,
    10**8,
    1.5e308,
    float("nan"),
    "",
    "\x1b[31mred\x1b[0m\x07",
    "[bold]x[/]",
    "x" * 10_000,
    b"\x00\xff",
    [],
    [1, [2]],
    {},
    {"a": {"b": []}},
    {"tasks": "nope"},
    {"tasks": [1, 2]},
    {"tasks": [{"key": ["x"]}]},
]


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def _confuse(rng: random.Random, body: list[Any]) -> list[Any]:
    body = list(body)
    i = rng.randrange(len(body))
    choice = rng.random()
    if choice < 0.1:
        body[i] = _nested(rng.choice((200, 5000, 100_000)))
    elif choice < 0.2:
        body[i] = {"n_map_states": 10**8} if rng.random() < 0.5 else [{"u": 1}]
    else:
        body[i] = rng.choice(_WEIRD)
    if rng.random() < 0.2:
        body = body[: rng.randrange(len(body) + 1)] + ([None] * rng.randrange(3))
    return body


def _raw_nested(depth: int) -> bytes:
    return b"\x91" * depth + b"\x00"


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    how = rng.randrange(6)
    if how == 0 and buf:  # bit flips
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif how == 1:  # truncation
        del buf[rng.randrange(len(buf) + 1) :]
    elif how == 2:  # extension
        buf += bytes(rng.randrange(256) for _ in range(rng.randint(1, 12)))
    elif how == 3:  # a huge declared length (bin32, str32, array32, map32, ext32)
        header = rng.choice((b"\xc6", b"\xdb", b"\xdd", b"\xdf", b"\xc9"))
        at = rng.randrange(len(buf) + 1)
        buf[at:at] = header + b"\x7f\xff\xff\xff"
    elif how == 4:  # deep nesting in raw bytes
        return _raw_nested(rng.choice((1000, 100_000)))
    else:  # a bad extension type (states, exceptions, datetimes ...)
        code = rng.choice((1, 4, 10, 11, 12, 13, 14, 15, 17, 18, 63, 99))
        inner = rng.choice((b"", b"\x93\x01\x02", packb(["Nope", 1, 2, {}]), b"\xc1"))
        ext = b"\xc7" + bytes([len(inner), code]) + inner
        at = rng.randrange(len(buf) + 1)
        buf[at:at] = ext
    return bytes(buf)


@dataclass(frozen=True)
class FuzzCase:
    """One hostile log: which event was damaged and how."""

    number: int
    seq: int
    how: str
    events: tuple[tuple[str, bytes], ...]


def payloads(rng: random.Random) -> tuple[int, str, list[tuple[str, bytes]]]:
    """A valid log's ``(kind, payload)`` rows with one of them damaged."""
    rows = [(kind, packb(body)) for kind, body in _good()]
    i = rng.randrange(len(rows))
    kind, body = _good()[i]
    if rng.random() < 0.5:
        try:
            data = packb(_confuse(rng, body))
        except Exception:
            data = _raw_nested(5000)
        how = "type confusion"
    else:
        data = _mutate_bytes(rng, rows[i][1])
        how = "byte mutation"
    if rng.random() < 0.05:  # a different kind for the same payload
        kind = rng.choice(("run", "state", "log", "note", "bogus"))
        how += ", kind changed"
    rows[i] = (kind, data)
    return i + 1, how, rows


def cases(seed: int, count: int) -> Iterator[FuzzCase]:
    """``count`` hostile logs drawn from ``seed`` (the same seed, the same logs)."""
    rng = random.Random(seed)
    for number in range(count):
        seq, how, rows = payloads(rng)
        yield FuzzCase(number, seq, how, tuple(rows))


def hostile_log(
    run_id: str, case: FuzzCase, *, ts0: int = 1_700_000_000_000_000_000
) -> list[StoredEvent]:
    """The case's rows as a run's events, hash-chained like a real log (so ``verify`` reads
    past the chain to the payloads)."""
    events: list[StoredEvent] = []
    prev = b""
    for n, (kind, payload) in enumerate(case.events, start=1):
        event = make_event(run_id, n, 1, prev, kind, ts0 + n * 1_000_000, payload)
        events.append(event)
        prev = chain_hash(event)
    return events
