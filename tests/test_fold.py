"""The fold over a damaged log: every kind of bad event is named by run and sequence number,
the same whether the events come whole (``fold``) or as a store's rows (``replay``), and
the log itself stays readable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest

from statecore import Flow, task
from statecore.backends import MemoryStore, SQLiteStore
from statecore.errors import CorruptEvent, SchemaVersionError
from statecore.events import SCHEMA_VERSION, StoredEvent, encode_state_change
from statecore.runners import replay
from statecore.serialization import packb
from statecore.view import RunView, fold


@task
def double(x: int) -> int:
    return 2 * x


@task
def big(n: int) -> bytes:
    return b"x" * n


def logged_run(flow: Flow) -> tuple[str, list[StoredEvent]]:
    store = MemoryStore()
    state = flow.run(store=store)
    assert state.is_successful()
    run_id: str = state.run_id  # type: ignore[attr-defined]
    return run_id, store.read(run_id)


def doubling_flow() -> Flow:
    with Flow("doubling") as flow:
        double.map([1, 2, 3])
    return flow


def first_state_event(events: list[StoredEvent], after: int = 0) -> int:
    return next(i for i, e in enumerate(events) if e.kind == "state" and i > after)


def tampered(events: list[StoredEvent], at: int, payload: bytes) -> list[StoredEvent]:
    out = list(events)
    out[at] = dataclasses.replace(out[at], payload=payload)
    return out


def fold_both_ways(events: list[StoredEvent], tmp_path: Path) -> list[Callable[[], RunView]]:
    """Fold the events whole, and replay them as rows from a SQLite file."""
    run_id = events[0].run_id
    store = SQLiteStore(tmp_path / "runs.db")
    store.append(run_id, events, expected_seq=0)
    return [lambda: fold(events), lambda: replay(store, run_id)]


def valid_change(**fields: object) -> bytes:
    change: dict[str, object] = {
        "task": "double-1",
        "index": 0,
        "prev": "Pending",
        "new": "Running",
        "attempt": 1,
        "message": None,
        "result": None,
        "result_stored": True,
        "extra": None,
    }
    change.update(fields)
    return encode_state_change(**change)  # type: ignore[arg-type]


BAD_PAYLOADS = {
    "not msgpack": (b"\xc1\xc1", "cannot be decoded"),
    "truncated": (packb([SCHEMA_VERSION, "double-1", 0, "Pending"])[:-3], "cannot be decoded"),
    "empty": (b"", "cannot be decoded"),
    "trailing bytes": (valid_change() + b"\x01", "cannot be decoded"),
    "unknown state": (valid_change(new="Exploded"), "Exploded"),
    "unknown task": (valid_change(task="nope-1", index=None), "unknown task 'nope-1'"),
    "not a child": (valid_change(index=99), r"double-1\[99\] is not a child"),
}


@pytest.mark.parametrize("case", sorted(BAD_PAYLOADS))
def test_a_bad_state_event_is_named_whole_or_as_rows(case: str, tmp_path: Path) -> None:
    run_id, events = logged_run(doubling_flow())
    # a child's event: the parent's Mapped event comes first, so the child exists
    at = next(
        i
        for i, e in enumerate(events)
        if e.kind == "state" and msgpack.unpackb(e.payload)[2] == 0
    )
    payload, why = BAD_PAYLOADS[case]
    bad = tampered(events, at, payload)
    for fold_it in fold_both_ways(bad, tmp_path):
        with pytest.raises(CorruptEvent, match=why) as raised:
            fold_it()
        assert f"run {run_id!r}" in str(raised.value)
        if why == "cannot be decoded":
            assert f"event {at + 1}" in str(raised.value)
    # nothing was lost: the store reads the log back as it was written
    assert SQLiteStore(tmp_path / "runs.db").read(run_id) == bad


def test_an_event_of_a_newer_schema_is_a_clear_error(tmp_path: Path) -> None:
    run_id, events = logged_run(doubling_flow())
    at = first_state_event(events)
    newer = packb([SCHEMA_VERSION + 1, *msgpack.unpackb(events[at].payload)[1:]])
    for fold_it in fold_both_ways(tampered(events, at, newer), tmp_path):
        with pytest.raises(SchemaVersionError, match="upgrade statecore") as raised:
            fold_it()
        assert f"run {run_id!r}, event {at + 1}" in str(raised.value)


def test_a_gap_is_named() -> None:
    run_id, events = logged_run(doubling_flow())
    with pytest.raises(CorruptEvent, match=r"event 5 follows 3; the log has a gap") as raised:
        fold(events[:3] + events[4:])
    assert f"run {run_id!r}" in str(raised.value)


MIB = 1 << 20


def test_megabyte_payloads_fold_between_small_ones(tmp_path: Path) -> None:
    with Flow("big") as flow:
        big(MIB + 10)
        double(1)
        big(10)
    _, events = logged_run(flow)
    assert max(len(e.payload) for e in events) > MIB
    for fold_it in fold_both_ways(events, tmp_path):
        view = fold_it()
        results = sorted(
            (r.state.result for r in view.runs), key=lambda r: len(r) if r != 2 else 0
        )
        assert results == [2, b"x" * 10, b"x" * (MIB + 10)]
        assert view.flow_state.is_successful()
