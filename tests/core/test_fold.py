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

from statecore import Flow, codec, task
from statecore import view as view_module
from statecore.backends import MemoryStore, SQLiteStore
from statecore.errors import CorruptEvent, SchemaVersionError
from statecore.events import MAX_MAP_STATES, SCHEMA_VERSION, StoredEvent, encode_state_change
from statecore.fold import _CHUNK, RunView, TaskRun, fold
from statecore.runners import replay
from statecore.serialization import packb
from statecore.states import State


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
    "task not a string": (valid_change(task=["double-1"], index=None), "unknown task"),
    "not a child": (valid_change(index=99), r"double-1\[99\] is not a child"),
}


@pytest.mark.parametrize("case", sorted(BAD_PAYLOADS))
def test_a_bad_state_event_is_named_whole_or_as_rows(case: str, tmp_path: Path) -> None:
    run_id, events = logged_run(doubling_flow())
    # a child's event: the parent's Mapped event comes first, so the child exists
    at = next(
        i for i, e in enumerate(events) if e.kind == "state" and msgpack.unpackb(e.payload)[2] == 0
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
        results = sorted((r.state.result for r in view.runs), key=lambda r: len(r) if r != 2 else 0)
        assert results == [2, b"x" * 10, b"x" * (MIB + 10)]
        assert view.flow_state.is_successful()


# -- the replay loop's savings: chunked decoding, children made late, shared Running --


@pytest.fixture(scope="module")
def long_log() -> tuple[str, list[StoredEvent]]:
    # 5,000 children, about 10,000 events: many of the fold's chunks
    with Flow("long") as flow:
        double.map(list(range(5000)))
    return logged_run(flow)


def child_event(events: list[StoredEvent], after: int) -> int:
    """The first child state event at or after index ``after``."""
    return next(
        i
        for i, e in enumerate(events)
        if i >= after and e.kind == "state" and msgpack.unpackb(e.payload)[2] is not None
    )


def rows_of(events: list[StoredEvent]) -> list[tuple[int, str, int, bytes]]:
    return [(e.seq, e.kind, e.ts, e.payload) for e in events]


# payloads that break a chunk's one-call decoding, each alone or as a pair whose lengths
# cancel out (one byte short, then one byte over), which only the separators catch
DAMAGE: dict[str, Callable[[bytes, bytes], tuple[bytes, bytes]]] = {
    "truncated": lambda a, b: (a[:-1], b),
    "trailing byte": lambda a, b: (a + b"\xc0", b),
    "short then long": lambda a, b: (a[:-1], b + b"\xc0"),
    "long then short": lambda a, b: (a + b"\xc0", b[:-1]),
    "not msgpack": lambda a, b: (b"\xc1" + a[1:], b),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damage_deep_in_a_long_log_is_named_and_all_before_it_is_folded(
    case: str, long_log: tuple[str, list[StoredEvent]]
) -> None:
    run_id, events = long_log
    assert len(events) > 2 * _CHUNK
    at = child_event(events, 6000)
    later = child_event(events, at + 1)
    assert at // _CHUNK == later // _CHUNK  # a pair whose lengths cancel: in one chunk
    first, second = DAMAGE[case](events[at].payload, events[later].payload)
    bad = tampered(tampered(events, at, first), later, second)
    view = RunView(run_id)
    view.track = False
    with pytest.raises(CorruptEvent, match=f"run {run_id!r}, event {at + 1}: payload"):
        view.apply_rows(rows_of(bad))
    assert view.head == at
    # every child is a TaskRun even so, and as many succeeded as the events before say
    kids = [c for found in view.children.values() for c in found]
    assert len(kids) == 5000 and all(isinstance(c, TaskRun) for c in kids)
    succeeded = sum(
        e.kind == "state" and msgpack.unpackb(e.payload)[4] == "Success"
        for e in events[:at]
        if e.kind == "state" and msgpack.unpackb(e.payload)[2] is not None
    )
    assert sum(c.state.is_successful() for c in kids) == succeeded > 0


def test_a_log_cut_mid_map_leaves_children_pending_or_running_each_its_own() -> None:
    run_id, events = logged_run(doubling_flow())
    mapped = next(
        i
        for i, e in enumerate(events)
        if e.kind == "state" and msgpack.unpackb(e.payload)[4] == "Mapped"
    )
    starts = [
        e
        for e in events[mapped + 1 :]
        if e.kind == "state" and msgpack.unpackb(e.payload)[4] == "Running"
    ][:2]
    # the run stopped after two children started (as a crash, or two workers, leave it)
    cut = events[: mapped + 1] + [
        dataclasses.replace(e, seq=mapped + 2 + i) for i, e in enumerate(starts)
    ]
    replayed = fold(cut)
    reference = RunView(run_id)  # keeps a timeline: no short cut, no sharing
    reference.apply_many(cut)
    kids = replayed.children[replayed.by_key["double-1"]]
    assert [type(c.state).__name__ for c in kids] == ["Running", "Running", "Pending"]
    for mine, theirs in zip(kids, reference.children[reference.by_key["double-1"]], strict=True):
        assert mine.state == theirs.state
        assert (mine.started, mine.ended, mine.attempt) == (
            theirs.started,
            theirs.ended,
            theirs.attempt,
        )
    # no two tasks share a State object, so changing one changes no other
    assert len({id(c.state) for c in kids}) == 3
    kids[0].state.message = "changed"
    assert kids[1].state.message == "Starting task run."


def test_the_replay_loop_makes_states_and_task_runs_as_their_classes_do() -> None:
    # the codec sets these slots itself instead of calling the classes (codec.PLAIN)
    for cls in codec.PLAIN:
        assert cls.__init__ is State.__init__
        assert vars(cls)["__slots__"] == ()
        made, called = codec.make_plain(cls, "m", [1]), cls("m", [1])
        assert type(made) is cls and made == called and made.run_id is called.run_id
    assert State.__slots__ == view_module._STATE_SLOTS
    assert TaskRun.__slots__ == view_module._TASK_RUN_SLOTS
    # and what it makes equals what the classes make, slot by slot
    run_id, events = logged_run(doubling_flow())
    replayed = fold(events)
    reference = RunView(run_id)  # keeps a timeline: makes everything through the classes
    reference.apply_many(events)
    node = replayed.by_key["double-1"]
    mine_all = replayed.children[node] + replayed.runs
    theirs_all = reference.children[node] + reference.runs
    for mine, theirs in zip(mine_all, theirs_all, strict=True):
        for slot in view_module._TASK_RUN_SLOTS:
            assert getattr(mine, slot) == getattr(theirs, slot), slot
        for slot in view_module._STATE_SLOTS:
            assert getattr(mine.state, slot) == getattr(theirs.state, slot), slot


def test_two_payloads_crafted_around_a_separator_are_refused(tmp_path: Path) -> None:
    """The forgery an author of the log could craft against a known separator: the first
    payload is an event without its last field (extras), so it swallows the separator
    after it as that field; the second starts with a copy of the separator, then a whole
    event. Neither decodes alone; replay must say so, not fold a "FORGED" event. The
    separator's mark is drawn per process, so a copy cannot match."""
    _, events = logged_run(doubling_flow())
    at = first_state_event(events)
    known_mark = b"\x00sc:sep\x00"  # what the separator was, and what a forger would copy
    fields = msgpack.unpackb(events[at].payload)
    fields[6] = "FORGED"  # the message
    swallowing = b"\x9a" + b"".join(msgpack.packb(f) for f in fields[:9])
    forged_next = b"\xc4\x08" + known_mark + events[at + 1].payload
    log = tampered(tampered(events, at, swallowing), at + 1, forged_next)
    for fold_log in fold_both_ways(log, tmp_path):
        with pytest.raises(CorruptEvent, match=f"event {events[at].seq}"):
            fold_log()


# -- found by the 10,000-case fuzz run (tests/runners/test_fuzz.py): caps and required fields --


def test_a_mapped_state_declaring_too_many_children_is_refused_not_allocated(
    tmp_path: Path,
) -> None:
    """A Mapped event's count is a size: 10**8 declared children would be a TaskRun each
    (gigabytes) before any of them is logged; the fold names the event instead."""
    run_id, events = logged_run(doubling_flow())
    at = next(
        i
        for i, e in enumerate(events)
        if e.kind == "state" and msgpack.unpackb(e.payload)[4] == "Mapped"
    )
    body = msgpack.unpackb(events[at].payload)
    for count in (10**8, MAX_MAP_STATES + 1, -1, "3"):
        body[9] = {"n_map_states": count}
        for fold_it in fold_both_ways(tampered(events, at, packb(body)), tmp_path / str(count)):
            with pytest.raises(CorruptEvent, match=r"n_map_states|children") as raised:
                fold_it()
            assert f"run {run_id!r}, event {at + 1}" in str(raised.value)


def test_a_run_refuses_to_map_over_more_than_the_cap() -> None:
    @task
    def many() -> list[int]:
        return [0] * (MAX_MAP_STATES + 1)

    with Flow("too-many") as flow:
        double.map(many())
    store = MemoryStore()
    state = flow.run(store=store)
    assert state.is_failed()
    mapped = state.result[flow.get_tasks(name="double")[0]]  # type: ignore[index]
    assert mapped.is_failed() and "at most 1,000,000 children" in (mapped.message or "")
    # the log says the same, and holds no child
    assert replay(store, state.run_id).task_states["double"] == mapped  # type: ignore[attr-defined]


def test_a_graph_task_without_a_name_is_a_corrupt_run_event(tmp_path: Path) -> None:
    run_id, events = logged_run(doubling_flow())
    at = next(i for i, e in enumerate(events) if e.kind == "run")
    body = msgpack.unpackb(events[at].payload)
    for task_entry in body[2]["tasks"]:
        task_entry.pop("name")
    for fold_it in fold_both_ways(tampered(events, at, packb(body)), tmp_path):
        with pytest.raises(CorruptEvent, match="name is missing") as raised:
            fold_it()
        assert f"run {run_id!r}, event {at + 1}" in str(raised.value)
