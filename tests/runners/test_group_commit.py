"""Group commit: the durability rules of DESIGN.md, Durability, checked on a real file.

The runner buffers events and appends them in groups, but it must commit everything
before a state handler or ``on_failure`` callback runs and before ``flow.run`` returns.
These tests make the group window huge (512 events, 10 s), so that only those rules can
explain an event being on disk, and look at the file through a *second* store handle,
as another process would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from statecore import Flow, signals, task
from statecore.backends.base import CacheEntry, Lease, RunMeta, Store
from statecore.backends.sqlite import SQLiteStore
from statecore.events import (
    KIND_STATE,
    StateChanged,
    StoredEvent,
    decode_body,
    encode_state_change,
)
from statecore.fold import fold
from statecore.runners.journal import Journal
from statecore.runners.local import LocalRunner
from statecore.states import State

BIG_WINDOW = {"group_events": 512, "group_delay": 10.0}


class CountingStore(Store):
    """A real store with a counter: every call goes to ``inner``; appends are counted."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.url = inner.url
        self.appends = 0
        self.events = 0
        self.batches: list[int] = []

    def append(
        self,
        run_id: str,
        events: Sequence[StoredEvent],
        *,
        expected_seq: int,
        lease: Lease | None = None,
        run_meta: RunMeta | None = None,
    ) -> int:
        head = self.inner.append(
            run_id, events, expected_seq=expected_seq, lease=lease, run_meta=run_meta
        )
        self.appends += 1
        self.events += len(events)
        self.batches.append(len(events))
        return head

    def read(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        return self.inner.read(run_id, after=after, limit=limit)

    def head(self, run_id: str) -> int:
        return self.inner.head(run_id)

    def get_run(self, run_id: str) -> RunMeta | None:
        return self.inner.get_run(run_id)

    def list_runs(self, **filters: Any) -> list[RunMeta]:
        return self.inner.list_runs(**filters)

    def prune(self, *, before: int) -> int:
        return self.inner.prune(before=before)

    def acquire_lease(self, run_id: str, *, owner: str, ttl: float, now: int) -> Lease:
        return self.inner.acquire_lease(run_id, owner=owner, ttl=ttl, now=now)

    def renew_lease(self, lease: Lease, *, ttl: float, now: int) -> Lease:
        return self.inner.renew_lease(lease, ttl=ttl, now=now)

    def release_lease(self, lease: Lease) -> None:
        self.inner.release_lease(lease)

    def get_lease(self, run_id: str) -> Lease | None:
        return self.inner.get_lease(run_id)

    def cache_put(self, key: str, payload: bytes, *, expires: int) -> None:
        self.inner.cache_put(key, payload, expires=expires)

    def cache_get(self, key: str, *, now: int) -> list[CacheEntry]:
        return self.inner.cache_get(key, now=now)

    def request_cancel(self, run_id: str, *, now: int) -> None:
        self.inner.request_cancel(run_id, now=now)

    def cancel_requested(self, run_id: str, *, now: int) -> bool:
        return self.inner.cancel_requested(run_id, now=now)

    def close(self) -> None:
        self.inner.close()


# -- (a) commits before user callbacks and before flow.run returns ------------------------


class Observer:
    """State handlers that look at the log through a second handle on the same file.

    Each call records the durable head it saw and the transition it was called for; the
    test then checks that the very next event in the log is that transition, i.e. that
    nothing before it was still sitting in a buffer when the handler ran.
    """

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self.seen: list[tuple[str, int, str | None, str, str]] = []
        self.problems: list[str] = []
        self.lock = threading.Lock()

    def _look(self, what: str, key: str | None, old: State, new: State) -> None:
        second = SQLiteStore(self.path)
        try:
            events = second.read(self.run_id)
            head = second.head(self.run_id)
        finally:
            second.close()
        if head != len(events):
            self.problems.append(f"{what}: head {head} but {len(events)} events readable")
        if [e.seq for e in events] != list(range(1, head + 1)):
            self.problems.append(f"{what}: the second handle sees a log with gaps")
        with self.lock:
            self.seen.append((what, head, key, old.name, new.name))

    def task_handler(self, t: Any, old: State, new: State) -> None:
        self._look("task handler", t.name, old, new)

    def task_on_failure(self, t: Any, state: State) -> None:
        self._look("on_failure", None, state, state)

    def flow_handler(self, flow: Any, old: State, new: State) -> None:
        self._look("flow handler", None, old, new)


def _keys_of(events: list[StoredEvent]) -> list[StateChanged | None]:
    out: list[StateChanged | None] = []
    for e in events:
        body = decode_body(e)
        out.append(body if isinstance(body, StateChanged) else None)
    return out


@pytest.mark.parametrize("max_workers", [1, 4])
def test_everything_earlier_is_durable_when_a_handler_runs(
    tmp_path: Path, max_workers: int
) -> None:
    path = tmp_path / "runs.db"
    run_id = f"handlers-{max_workers}"
    obs = Observer(path, run_id)

    @task(state_handlers=[obs.task_handler])
    def step(x: int) -> int:
        return x + 1

    @task(state_handlers=[obs.task_handler], on_failure=obs.task_on_failure)
    def boom(x: int) -> int:
        raise signals.FAIL(f"no {x}")

    @task
    def plain(x: int) -> int:  # no handlers: its events may stay buffered
        return x * 2

    with Flow("group-commit", state_handlers=[obs.flow_handler]) as flow:
        x = step(0)
        for _ in range(20):
            x = plain(step(x))
        fan = [step(i) for i in range(10)]  # independent: run on the pool when workers > 1
        boom(fan[3])

    store = SQLiteStore(path)
    try:
        state = flow.run(
            store=store, run_id=run_id, runner=LocalRunner(max_workers=max_workers, **BIG_WINDOW)
        )
        assert state.is_failed()  # boom is a terminal task
    finally:
        store.close()

    assert not obs.problems, obs.problems
    second = SQLiteStore(path)
    try:
        log = second.read(run_id)
    finally:
        second.close()
    changes = _keys_of(log)
    handler_calls = [s for s in obs.seen if s[0] == "task handler"]
    # every transition of a task with handlers: Running then Success/Failed, 2 per task
    assert len(handler_calls) == 2 * (1 + 20 + 10 + 1)
    assert len([s for s in obs.seen if s[0] == "on_failure"]) == 1
    assert [s[3:] for s in obs.seen if s[0] == "flow handler"] == [
        ("Pending", "Running"),
        ("Running", "Failed"),
    ]
    for what, head, _key, old, new in obs.seen:
        # The handler saw a durable head; the event right after it must be the very
        # transition the handler was called for (appended after the handler returned):
        # so nothing earlier was still buffered.
        assert head < len(log), (what, head)
        nxt = changes[head]
        assert nxt is not None, f"{what} at head {head}: next event is not a state change"
        if what == "on_failure":
            # on_failure runs after the task's handlers, before its Failed is appended
            assert nxt.task is not None and nxt.task.startswith("boom"), (head, nxt)
            assert nxt.new == "Failed", (head, nxt)
        else:
            assert (nxt.prev, nxt.new) == (old, new), (what, head, nxt)
            if what == "flow handler":
                assert nxt.task is None


def test_flow_run_returns_only_after_everything_is_committed(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"

    @task
    def inc(x: int) -> int:
        return x + 1

    with Flow("returns-committed") as flow:
        x = inc(0)
        for _ in range(99):
            x = inc(x)
        inc.map(list(range(50)))

    store = SQLiteStore(path)
    try:
        state = flow.run(store=store, runner=LocalRunner(**BIG_WINDOW))
    finally:
        store.close()
    assert state.is_successful()
    run_id = state.run_id  # type: ignore[attr-defined]
    driver_view = state.result._view  # the view the driver folded as it appended
    second = SQLiteStore(path)
    try:
        head = second.head(run_id)
        events = second.read(run_id)
        meta = second.get_run(run_id)
    finally:
        second.close()
    # 1 run + 2 flow + 2 x 100 chain + (2 mapped parent + 100 children) + the list constant
    assert head == len(events) == driver_view.head
    assert head > 300
    replayed = fold(events, run_id=run_id)
    assert replayed.head == head
    assert replayed.flow_state.name == "Success"
    assert replayed.problems == []
    assert meta is not None and meta.state == "Success" and meta.ended is not None


# -- (b) group commit really groups ---------------------------------------------------------


def _chain(n: int) -> Flow:
    @task
    def inc(x: int) -> int:
        return x + 1

    with Flow("chain") as flow:
        x = inc(0)
        for _ in range(n - 1):
            x = inc(x)
    return flow


def test_group_commit_groups_a_500_task_chain(tmp_path: Path) -> None:
    store = CountingStore(SQLiteStore(tmp_path / "runs.db"))
    try:
        state = _chain(500).run(store=store, runner=LocalRunner(**BIG_WINDOW))
        assert state.is_successful()
        head = store.head(state.run_id)  # type: ignore[attr-defined]
    finally:
        store.close()
    assert head == 1 + 2 + 2 + 2 * 500  # run, flow Running/Success, session start/end, 2 per task
    assert store.events == head
    # 1,005 events in windows of 512: a handful of appends, not one per event.
    assert store.appends <= 6, store.batches
    assert max(store.batches) >= 500, store.batches


def test_a_window_of_one_event_appends_every_event(tmp_path: Path) -> None:
    """The counter is honest: with no grouping, appends match events."""
    store = CountingStore(SQLiteStore(tmp_path / "runs.db"))
    try:
        state = _chain(50).run(store=store, runner=LocalRunner(group_events=1, group_delay=10.0))
        assert state.is_successful()
        head = store.head(state.run_id)  # type: ignore[attr-defined]
    finally:
        store.close()
    assert store.events == head == 105
    assert store.appends >= head


# -- (c) synchronous=FULL reaches the connection ---------------------------------------------


def _pragma_in_thread(store: SQLiteStore) -> int:
    box: list[int] = []
    thread = threading.Thread(target=lambda: box.append(store.inspect()["synchronous"]))
    thread.start()
    thread.join()
    return box[0]


def test_synchronous_default_is_normal(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        assert store.inspect()["synchronous"] == 1  # NORMAL
        assert store.inspect()["journal_mode"] == "wal"
    finally:
        store.close()


def test_synchronous_full_reaches_every_connection(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db", synchronous="FULL")
    try:
        assert store.inspect()["synchronous"] == 2  # FULL, this thread's connection
        assert _pragma_in_thread(store) == 2  # and a connection another thread opens
        seen: list[int] = []

        @task(state_handlers=[lambda t, old, new: seen.append(store.inspect()["synchronous"])])
        def one() -> int:
            return 1

        with Flow("full") as flow:
            one()
        assert flow.run(store=store).is_successful()
        assert seen and set(seen) == {2}  # the driver thread, which appends
    finally:
        store.close()


def test_synchronous_full_from_a_url(tmp_path: Path) -> None:
    from statecore.backends import open_store

    store = open_store(f"sqlite:///{tmp_path / 'runs.db'}?synchronous=FULL")
    try:
        assert isinstance(store, SQLiteStore)
        assert store.inspect()["synchronous"] == 2
    finally:
        store.close()


def test_an_outcome_s_window_runs_from_its_body_s_end(tmp_path: Path) -> None:
    """The window of an outcome starts when its body ended (``ended_at``, measured on the
    worker), not when the driver buffered it: an outcome whose body ended a whole window
    ago makes the buffer due at once; one that just ended waits in the buffer. Outcomes
    that ended long ago (a driver behind its workers) are not committed one by one as
    they are added: the caller commits them as one group on its due() check."""
    path = tmp_path / "log.db"
    store, reader = SQLiteStore(path), SQLiteStore(path)
    journal = Journal(store, "window-run", max_events=512, max_delay=10.0)

    def outcome(ended: int | None) -> None:
        payload = encode_state_change("t", None, "Running", "Success", 1, "", 1, True, None)
        journal.add_payload(KIND_STATE, payload, time.time_ns(), ended)

    outcome(time.time_ns())
    assert journal.buffer and not journal.due()
    assert len(reader.read("window-run")) == 0
    assert journal.until_due() > 0

    for _ in range(100):
        outcome(time.time_ns() - 11 * 10**9)  # these bodies ended more than a window ago
    assert journal.due() and journal.until_due() == 0.0
    assert len(reader.read("window-run")) == 0  # one group, not a commit per outcome
    journal.flush()
    assert not journal.buffer
    assert [e.seq for e in reader.read("window-run")] == list(range(1, 102))
    assert journal.until_due() == 10.0  # nothing buffered: a whole window
