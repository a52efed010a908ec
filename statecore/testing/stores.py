"""The store conformance suite: what every backend must do, as tests it can inherit.

A backend proves itself by subclassing :class:`StoreContractTests` in a pytest module::

    from statecore.testing import StoreContractTests

    class TestMyStore(StoreContractTests):
        def make_store(self) -> Store:
            return MyStore(...)              # a fresh, empty store for each test

        def make_second_store(self) -> Store:
            return MyStore(...)              # optional: another handle on the same data

:class:`StoreContractTests` is the composition of one mixin per capability of
:class:`~statecore.backends.base.Store`: :class:`EventLogTests`, :class:`RunIndexTests`,
:class:`LeaseTests`, :class:`ResultCacheTests` and :class:`CancellationTests`, each a
:class:`StoreTestCase` whose ``make_store`` is abstract. A backend still being written
can subclass the mixins of what it has so far (``class TestMyLog(EventLogTests)``).

A backend is also checked differentially, against the other stores, with
:func:`~statecore.testing.store_machine.store_state_machine`, which runs the same random
appends, reads and lease moves on several stores and a reference model and checks after
every step that they all agree. It lives in :mod:`statecore.testing.store_machine` and is
still importable from here.

The suite needs nothing but the standard library; the state machine needs Hypothesis
(``pip install 'statecore[testing]'``).
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from statecore.backends.base import LEGACY_CANCEL_PREFIX, CacheEntry, Lease, RunMeta, Store
from statecore.errors import (
    ConcurrencyError,
    LeaseHeld,
    LeaseLost,
    StatecoreError,
)
from statecore.events import StoredEvent

if TYPE_CHECKING:
    from statecore.testing.store_machine import store_state_machine

__all__ = [
    "NOW",
    "ODD_RUN_IDS",
    "SECOND",
    "CancellationTests",
    "EventLogTests",
    "LeaseTests",
    "ResultCacheTests",
    "RunIndexTests",
    "StoreContractTests",
    "StoreTestCase",
    "sample_events",
    "store_state_machine",
]

#: A fixed "current time" for the suite (UTC ns); stores never read the clock for these.
NOW = 1_700_000_000_000_000_000
#: One second in the stores' time unit.
SECOND = 1_000_000_000

#: Run ids that a store must keep apart and never interpret: each must work, or be
#: refused with a :class:`~statecore.errors.StatecoreError` that writes nothing.
ODD_RUN_IDS: tuple[str, ...] = (
    "with space",
    "a:b:c",
    "a",
    "a:events",
    "{a}",
    "a}:{b",
    "quote'd",
    'double"quoted',
    "x'); DROP TABLE events; --",
    "* ? [glob] %like_%",
    "back\\slash/and/slash",
    "tab\tnew\nline",
    "nul\x00byte",
    "ünïcödé-运行-🚀",
    "r" * 1024,
    "",
    "lone-surrogate-\ud800",
)

_E = TypeVar("_E", bound=BaseException)


def sample_events(
    run_id: str, start: int = 1, count: int = 1, *, epoch: int = 0, tag: str = ""
) -> list[StoredEvent]:
    """Events ``start .. start + count - 1`` of ``run_id`` with distinctive payloads.

    Payloads hold the run id, the sequence number and ``tag``, plus a NUL byte and a
    high byte, so a store that mixes up runs or mangles bytes is caught.
    """
    return [
        StoredEvent(
            run_id=run_id,
            seq=seq,
            epoch=epoch,
            prev_hash=b"" if seq == 1 else bytes([seq % 256]) * 16,
            kind=("run", "state", "log", "note")[seq % 4],
            ts=NOW + seq * SECOND,
            payload=f"{run_id}#{seq}#{tag}".encode("utf-8", "surrogatepass") + b"\x00\xff",
        )
        for seq in range(start, start + count)
    ]


class _Raised(Generic[_E]):
    value: _E


@contextmanager
def _raises(kind: type[_E]) -> Iterator[_Raised[_E]]:
    """``pytest.raises`` without importing pytest, so the suite runs under any runner."""
    caught: _Raised[_E] = _Raised()
    try:
        yield caught
    except kind as exc:
        caught.value = exc
        return
    raise AssertionError(f"expected {kind.__name__} to be raised")


def _meta(
    run_id: str,
    *,
    flow: str = "flow",
    state: str = "Running",
    started: int = NOW,
    ended: int | None = None,
    parent_run: str | None = None,
) -> RunMeta:
    return RunMeta(run_id, flow, state, started, ended, 0, parent_run)


def _race(stores: Sequence[Store], head: int) -> list[object]:
    """Let each store append two events after ``head`` at the same moment, from its own
    thread; return what each got: "won", "lost" (ConcurrencyError) or the exception."""
    barrier = threading.Barrier(len(stores))
    outcomes: list[object] = [None] * len(stores)

    def append(i: int) -> None:
        barrier.wait()
        try:
            stores[i].append("r1", sample_events("r1", head + 1, 2, tag=str(i)), expected_seq=head)
            outcomes[i] = "won"
        except ConcurrencyError:
            outcomes[i] = "lost"
        except BaseException as exc:  # the caller reports it
            outcomes[i] = exc

    threads = [threading.Thread(target=append, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


class StoreTestCase(abc.ABC):
    """What every capability's tests share: the :meth:`make_store` hook and cleanup.

    Subclass one or more of the capability mixins below (or :class:`StoreContractTests`,
    all of them) in a class whose name starts with ``Test`` and implement
    :meth:`make_store`. Each test uses :attr:`store` (made on first use) and, for the
    tests of concurrent handles, :meth:`make_second_store`; all of them are closed
    after the test. A mixin's tests exercise its capability and use the others only to
    set up (the run index's tests append events to have runs to list).
    """

    @abc.abstractmethod
    def make_store(self) -> Store:
        """Return a new, empty store. Called at most once per test."""

    def make_second_store(self) -> Store:
        """Return another handle on the data of :attr:`store`, as a second process would
        open it (the SQLite store opens the same file again).

        The default returns :attr:`store` itself, which every store supports: stores
        are shared by the threads of a process. Override it to test separate handles.
        """
        return self.store

    @property
    def store(self) -> Store:
        """The store under test, made by :meth:`make_store` on first use."""
        store: Store | None = self.__dict__.get("_contract_store")
        if store is None:
            store = self.make_store()
            self.__dict__["_contract_store"] = store
            self._contract_opened().append(store)
        return store

    def second_store(self) -> Store:
        """A second handle (see :meth:`make_second_store`), closed after the test."""
        store = self.make_second_store()
        if store is not self.store:
            self._contract_opened().append(store)
        return store

    def _contract_opened(self) -> list[Store]:
        opened: list[Store] = self.__dict__.setdefault("_contract_opened_stores", [])
        return opened

    def _listed(self, **filters: Any) -> list[str]:
        return [meta.run_id for meta in self.store.list_runs(**filters)]

    def teardown_method(self, method: object = None) -> None:
        """Close every store the test opened."""
        for store in reversed(self._contract_opened()):
            store.close()
        self.__dict__.pop("_contract_opened_stores", None)
        self.__dict__.pop("_contract_store", None)


class EventLogTests(StoreTestCase):
    """:class:`~statecore.backends.base.EventLog`: atomic, numbered, gap-free appends."""

    def test_unknown_run_is_empty(self) -> None:
        assert self.store.head("nobody") == 0
        assert self.store.read("nobody") == []
        assert self.store.get_run("nobody") is None
        assert self.store.get_lease("nobody") is None

    def test_append_returns_head_and_read_returns_events_in_order(self) -> None:
        events = sample_events("r1", 1, 5)
        assert self.store.append("r1", events[:2], expected_seq=0) == 2
        assert self.store.append("r1", events[2:], expected_seq=2) == 5
        assert self.store.head("r1") == 5
        assert self.store.read("r1") == events

    def test_events_read_back_exactly(self) -> None:
        odd = [
            StoredEvent("r1", 1, 0, b"", "run", 0, b""),
            StoredEvent("r1", 2, 7, bytes(range(16)), "state", 2**62, bytes(range(256))),
            StoredEvent("r1", 3, 2**31, b"\x00" * 16, "ünï", NOW, b"\x00" * 1000),
            StoredEvent("r1", 4, 1, b"h" * 16, "log", NOW, bytes(1_000_000)),
        ]
        self.store.append("r1", odd, expected_seq=0)
        got = self.store.read("r1")
        assert got == odd
        assert all(type(event) is StoredEvent for event in got)
        assert all(type(event.payload) is bytes for event in got)
        assert all(type(event.prev_hash) is bytes for event in got)

    def test_read_after_and_limit(self) -> None:
        events = sample_events("r1", 1, 10)
        self.store.append("r1", events, expected_seq=0)
        assert self.store.read("r1", after=3) == events[3:]
        assert self.store.read("r1", after=3, limit=4) == events[3:7]
        assert self.store.read("r1", limit=1) == events[:1]
        assert self.store.read("r1", after=8, limit=100) == events[8:]
        assert self.store.read("r1", after=10) == []
        assert self.store.read("r1", after=50) == []
        assert self.store.read("r1", limit=0) == []

    def test_scan_gives_the_rows_of_what_read_gives(self) -> None:
        # 20,001 events: more than one page of any store that reads in pages of <= 10k
        events = sample_events("r1", 1, 20_001)
        self.store.append("r1", events, expected_seq=0)
        self.store.append("r2", sample_events("r2", 1, 3), expected_seq=0)
        rows = [(e.seq, e.kind, e.ts, e.payload) for e in events]
        assert list(self.store.scan("r1")) == rows
        assert list(self.store.scan("r1", after=8_192)) == rows[8_192:]
        assert list(self.store.scan("r1", after=20_000)) == rows[20_000:]
        assert list(self.store.scan("r1", after=20_001)) == []
        assert list(self.store.scan("nobody")) == []
        assert all(type(row[3]) is bytes for row in self.store.scan("r1", after=19_990))

    def test_streams_are_separate(self) -> None:
        first, second = sample_events("r1", 1, 3), sample_events("r2", 1, 2)
        self.store.append("r1", first, expected_seq=0)
        self.store.append("r2", second, expected_seq=0)
        assert self.store.read("r1") == first
        assert self.store.read("r2") == second
        assert (self.store.head("r1"), self.store.head("r2")) == (3, 2)

    def test_large_batch(self) -> None:
        events = sample_events("r1", 1, 2_000)
        assert self.store.append("r1", events, expected_seq=0) == 2_000
        assert self.store.read("r1") == events
        assert self.store.read("r1", after=1_500, limit=10) == events[1_500:1_510]

    def test_stale_expected_seq_raises_and_writes_nothing(self) -> None:
        events = sample_events("r1", 1, 3)
        self.store.append("r1", events, expected_seq=0)
        for stale in (0, 2, 4, 10):
            with _raises(ConcurrencyError):
                self.store.append("r1", sample_events("r1", stale + 1, 2), expected_seq=stale)
        assert self.store.read("r1") == events
        assert self.store.head("r1") == 3

    def test_expected_seq_on_an_unknown_run_must_be_zero(self) -> None:
        with _raises(ConcurrencyError):
            self.store.append("r1", sample_events("r1", 2, 1), expected_seq=1)
        assert self.store.head("r1") == 0

    def test_misnumbered_event_in_batch_writes_nothing(self) -> None:
        self.store.append("r1", sample_events("r1", 1, 2), expected_seq=0)
        batch = sample_events("r1", 3, 5)
        for broken in (
            [*batch[:3], replace(batch[3], seq=99), batch[4]],  # a gap
            [*batch[:2], batch[1], *batch[3:]],  # a duplicate
            [batch[1], batch[0], *batch[2:]],  # out of order
            [*batch[:4], replace(batch[4], run_id="other")],  # another run's event
        ):
            with _raises(ConcurrencyError):
                self.store.append("r1", broken, expected_seq=2)
        assert self.store.head("r1") == 2
        assert self.store.read("r1") == sample_events("r1", 1, 2)
        assert self.store.head("other") == 0
        assert self.store.append("r1", batch, expected_seq=2) == 7

    def test_empty_append_changes_nothing_but_still_checks(self) -> None:
        assert self.store.append("r1", [], expected_seq=0) == 0
        assert self.store.head("r1") == 0
        assert self.store.get_run("r1") is None
        self.store.append("r1", sample_events("r1", 1, 2), expected_seq=0)
        assert self.store.append("r1", [], expected_seq=2) == 2
        with _raises(ConcurrencyError):
            self.store.append("r1", [], expected_seq=1)
        assert self.store.read("r1") == sample_events("r1", 1, 2)

    def test_errors_are_statecore_errors(self) -> None:
        self.store.append("r1", sample_events("r1", 1, 1), expected_seq=0)
        with _raises(StatecoreError) as raised:
            self.store.append("r1", sample_events("r1", 1, 1), expected_seq=0)
        assert isinstance(raised.value, ConcurrencyError)

    def test_racing_appends_with_the_same_expected_seq_one_wins(self) -> None:
        stores = (self.store, self.second_store())
        stores[0].append("r1", sample_events("r1", 1, 1), expected_seq=0)
        for round_ in range(20):
            head = stores[0].head("r1")
            outcomes = _race(stores, head)
            assert sorted(map(str, outcomes)) == ["lost", "won"], (round_, outcomes)
            winner = outcomes.index("won")
            assert stores[1 - winner].read("r1", after=head) == sample_events(
                "r1", head + 1, 2, tag=str(winner)
            )
        assert stores[0].head("r1") == 41

    def test_threads_appending_with_retries_lose_nothing(self) -> None:
        stores = (self.store, self.second_store())
        writers, per_writer = 4, 25

        def write(writer: int) -> None:
            store = stores[writer % 2]
            done = 0
            while done < per_writer:
                head = store.head("r1")
                event = sample_events("r1", head + 1, 1, tag=f"{writer}/{done}")
                try:
                    store.append("r1", event, expected_seq=head)
                except ConcurrencyError:
                    continue
                done += 1

        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        events = self.store.read("r1")
        assert [e.seq for e in events] == list(range(1, writers * per_writer + 1))
        tags = sorted(e.payload.split(b"#")[2].split(b"\x00")[0] for e in events)
        expected = sorted(f"{w}/{i}".encode() for w in range(writers) for i in range(per_writer))
        assert tags == expected


class RunIndexTests(StoreTestCase):
    """:class:`~statecore.backends.base.RunIndex`: run metadata, listing and pruning."""

    def test_run_meta_is_written_with_the_events(self) -> None:
        meta = _meta("r1", flow="etl", parent_run="r0")
        self.store.append("r1", sample_events("r1", 1, 3), expected_seq=0, run_meta=meta)
        assert self.store.get_run("r1") == replace(meta, head=3)
        done = replace(meta, state="Success", ended=NOW + 9 * SECOND)
        self.store.append("r1", sample_events("r1", 4, 1), expected_seq=3, run_meta=done)
        assert self.store.get_run("r1") == replace(done, head=4)

    def test_run_meta_alone_and_head_follows_the_log(self) -> None:
        meta = _meta("r1")
        assert self.store.append("r1", [], expected_seq=0, run_meta=meta) == 0
        assert self.store.get_run("r1") == meta
        self.store.append("r1", sample_events("r1", 1, 2), expected_seq=0)
        run = self.store.get_run("r1")
        assert run is not None and run.head == 2 and run.state == "Running"

    def test_run_meta_not_written_when_the_append_fails(self) -> None:
        self.store.append("r1", sample_events("r1", 1, 1), expected_seq=0, run_meta=_meta("r1"))
        failed = _meta("r1", state="Failed")
        with _raises(ConcurrencyError):
            self.store.append("r1", sample_events("r1", 1, 1), expected_seq=0, run_meta=failed)
        with _raises(ConcurrencyError):
            self.store.append(
                "r1",
                [replace(sample_events("r1", 2, 1)[0], seq=3)],
                expected_seq=1,
                run_meta=failed,
            )
        assert self.store.get_run("r1") == replace(_meta("r1"), head=1)
        with _raises(ConcurrencyError):
            self.store.append("r2", sample_events("r2", 2, 1), expected_seq=1, run_meta=_meta("r2"))
        assert self.store.get_run("r2") is None

    def _four_runs(self) -> None:
        runs = (
            _meta(
                "r1", flow="etl", state="Success", started=NOW + 1 * SECOND, ended=NOW + 2 * SECOND
            ),
            _meta("r2", flow="etl", state="Running", started=NOW + 3 * SECOND),
            _meta(
                "r3",
                flow="report",
                state="Failed",
                started=NOW + 5 * SECOND,
                ended=NOW + 6 * SECOND,
            ),
            _meta(
                "r4", flow="etl", state="Success", started=NOW + 7 * SECOND, ended=NOW + 8 * SECOND
            ),
        )
        for count, meta in enumerate(runs, start=1):
            self.store.append(
                meta.run_id, sample_events(meta.run_id, 1, count), expected_seq=0, run_meta=meta
            )

    def test_list_runs_newest_first_with_heads(self) -> None:
        self._four_runs()
        runs = self.store.list_runs()
        assert [m.run_id for m in runs] == ["r4", "r3", "r2", "r1"]
        assert [m.head for m in runs] == [4, 3, 2, 1]
        assert runs[1] == RunMeta("r3", "report", "Failed", NOW + 5 * SECOND, NOW + 6 * SECOND, 3)

    def test_list_runs_filters(self) -> None:
        self._four_runs()
        assert self._listed(flow_name="etl") == ["r4", "r2", "r1"]
        assert self._listed(flow_name="nothing") == []
        assert self._listed(state="Success") == ["r4", "r1"]
        assert self._listed(flow_name="etl", state="Running") == ["r2"]
        assert self._listed(since=NOW + 3 * SECOND) == ["r4", "r3", "r2"]  # inclusive
        assert self._listed(until=NOW + 5 * SECOND) == ["r2", "r1"]  # exclusive
        assert self._listed(since=NOW + 2 * SECOND, until=NOW + 7 * SECOND) == ["r3", "r2"]
        assert self._listed(limit=2) == ["r4", "r3"]
        assert self._listed(limit=0) == []
        assert self._listed(flow_name="etl", state="Success", limit=1) == ["r4"]

    def test_list_runs_ignores_runs_without_metadata(self) -> None:
        self.store.append("bare", sample_events("bare", 1, 1), expected_seq=0)
        assert self.store.list_runs() == []

    def test_prune_deletes_finished_runs_before_the_cutoff(self) -> None:
        self._four_runs()
        for run_id in ("r1", "r2"):
            self.store.acquire_lease(run_id, owner="driver", ttl=60, now=NOW)
        assert self.store.prune(before=NOW + 5 * SECOND) == 1  # only r1 ended by then
        assert self.store.get_run("r1") is None
        assert self.store.head("r1") == 0
        assert self.store.read("r1") == []
        assert self.store.get_lease("r1") is None
        assert self._listed() == ["r4", "r3", "r2"]
        assert self.store.get_lease("r2") is not None  # unfinished runs are never pruned
        assert self.store.read("r3") == sample_events("r3", 1, 3)
        assert self.store.prune(before=NOW + 5 * SECOND) == 0
        assert self.store.prune(before=NOW + 100 * SECOND) == 2
        assert self._listed() == ["r2"]
        assert self.store.read("r2") == sample_events("r2", 1, 2)

    def test_a_pruned_run_id_starts_afresh(self) -> None:
        self.store.append(
            "r1", sample_events("r1", 1, 2), expected_seq=0, run_meta=_meta("r1", ended=NOW)
        )
        assert self.store.prune(before=NOW + 1) == 1
        assert self.store.append("r1", sample_events("r1", 1, 1), expected_seq=0) == 1


class LeaseTests(StoreTestCase):
    """:class:`~statecore.backends.base.Leases`: holders, expiry and fencing epochs."""

    def _leased_run_pruned(self, run_id: str, *, owner: str, now: int) -> Lease:
        """Lease ``run_id``, finish it (ended at ``now``) under that lease and prune it;
        return the lease, which the prune leaves with an old driver."""
        lease = self.store.acquire_lease(run_id, owner=owner, ttl=60, now=now)
        head = self.store.head(run_id)
        self.store.append(
            run_id,
            sample_events(run_id, head + 1, 2, epoch=lease.epoch),
            expected_seq=head,
            lease=lease,
            run_meta=_meta(run_id, state="Success", started=now, ended=now),
        )
        assert self.store.prune(before=now + 1) == 1
        return lease

    def test_lease_epochs_never_go_backwards_across_prune(self) -> None:
        # The epoch is a fencing token per run id: were it to restart after a prune, a
        # driver still holding an old lease could match a new lease's epoch.
        first = self.store.acquire_lease("r1", owner="a", ttl=60, now=NOW)
        pruned = self._leased_run_pruned("r1", owner="a", now=NOW)
        assert pruned.epoch > first.epoch
        # No trace of the run, and nobody holds it: another owner takes it at once,
        # although the pruned lease had not expired.
        assert self.store.get_run("r1") is None
        assert self.store.head("r1") == 0
        assert self.store.read("r1") == []
        assert self._listed() == []
        current = self.store.get_lease("r1")
        assert current is None or current.expires <= NOW
        reused = self.store.acquire_lease("r1", owner="b", ttl=60, now=NOW)
        assert reused.epoch > pruned.epoch
        assert self.store.get_lease("r1") == reused
        # The new log starts at seq 1, and a second prune keeps counting on.
        fresh = sample_events("r1", 1, 1, epoch=reused.epoch)
        assert self.store.append("r1", fresh, expected_seq=0, lease=reused) == 1
        self.store.release_lease(reused)
        again = self._leased_run_pruned("r1", owner="b", now=NOW + SECOND)
        assert again.epoch > reused.epoch
        assert self.store.acquire_lease("r1", owner="c", ttl=60, now=NOW).epoch > again.epoch
        # Other run ids keep their own numbering.
        assert self.store.acquire_lease("r2", owner="a", ttl=60, now=NOW).epoch >= 1

    def test_a_lease_from_before_a_prune_cannot_write_to_the_reused_run_id(self) -> None:
        old = self._leased_run_pruned("r1", owner="old", now=NOW)
        # Until the id is leased again no lease is current, so the old one is refused
        # even where its sequence number would fit.
        with _raises(LeaseLost):
            self.store.append(
                "r1", sample_events("r1", 1, 1, epoch=old.epoch), expected_seq=0, lease=old
            )
        with _raises(LeaseLost):
            self.store.renew_lease(old, ttl=60, now=NOW)
        assert self.store.head("r1") == 0
        new = self.store.acquire_lease("r1", owner="new", ttl=60, now=NOW + SECOND)
        events = sample_events("r1", 1, 1, epoch=new.epoch, tag="new")
        self.store.append("r1", events, expected_seq=0, lease=new, run_meta=_meta("r1"))
        with _raises(LeaseLost):
            self.store.append(
                "r1",
                sample_events("r1", 2, 1, epoch=old.epoch, tag="old"),
                expected_seq=1,
                lease=old,
                run_meta=_meta("r1", state="Failed"),
            )
        with _raises(LeaseLost):
            self.store.renew_lease(old, ttl=60, now=NOW + SECOND)
        self.store.release_lease(old)  # a lost lease: no-op
        assert self.store.get_lease("r1") == new
        assert self.store.read("r1") == events
        assert self.store.get_run("r1") == replace(_meta("r1"), head=1)

    def test_acquire_gives_a_lease_and_increments_the_epoch(self) -> None:
        first = self.store.acquire_lease("r1", owner="a", ttl=10, now=NOW)
        assert first == Lease("r1", "a", first.epoch, NOW + 10 * SECOND)
        assert first.epoch >= 1
        assert self.store.get_lease("r1") == first
        again = self.store.acquire_lease("r1", owner="a", ttl=10, now=NOW + 1)
        assert again.epoch == first.epoch + 1  # its own holder may take it again
        other = self.store.acquire_lease("r2", owner="a", ttl=10, now=NOW)
        assert other.run_id == "r2"

    def test_lease_held_names_the_holder_while_unexpired(self) -> None:
        held = self.store.acquire_lease("r1", owner="host-a:123:tok", ttl=10, now=NOW)
        for now in (NOW, NOW + 5 * SECOND, NOW + 10 * SECOND - 1):
            with _raises(LeaseHeld) as raised:
                self.store.acquire_lease("r1", owner="host-b:456:tok", ttl=10, now=now)
            assert "host-a:123:tok" in str(raised.value)
        assert self.store.get_lease("r1") == held

    def test_takeover_after_expiry_has_a_higher_epoch(self) -> None:
        old = self.store.acquire_lease("r1", owner="a", ttl=10, now=NOW)
        new = self.store.acquire_lease("r1", owner="b", ttl=10, now=NOW + 10 * SECOND)
        assert new.owner == "b" and new.epoch > old.epoch
        assert self.store.get_lease("r1") == new
        with _raises(LeaseHeld) as raised:
            self.store.acquire_lease("r1", owner="a", ttl=10, now=NOW + 11 * SECOND)
        assert "b" in str(raised.value)

    def test_append_with_the_current_lease(self) -> None:
        lease = self.store.acquire_lease("r1", owner="a", ttl=10, now=NOW)
        events = sample_events("r1", 1, 2, epoch=lease.epoch)
        assert self.store.append("r1", events, expected_seq=0, lease=lease) == 2
        assert self.store.read("r1") == events

    def test_append_with_a_stale_lease_raises_lease_lost_and_writes_nothing(self) -> None:
        old = self.store.acquire_lease("r1", owner="a", ttl=10, now=NOW)
        self.store.append(
            "r1", sample_events("r1", 1, 1, epoch=old.epoch), expected_seq=0, lease=old
        )
        new = self.store.acquire_lease("r1", owner="b", ttl=10, now=NOW + 20 * SECOND)
        with _raises(LeaseLost):
            self.store.append(
                "r1",
                sample_events("r1", 2, 3, epoch=old.epoch),
                expected_seq=1,
                lease=old,
                run_meta=_meta("r1", state="Failed"),
            )
        assert self.store.head("r1") == 1
        assert self.store.get_run("r1") is None
        assert self.store.append("r1", sample_events("r1", 2, 1), expected_seq=1, lease=new) == 2

    def test_append_with_a_lease_on_a_run_nobody_leased(self) -> None:
        ghost = Lease("r1", "a", 1, NOW + SECOND)
        with _raises(LeaseLost):
            self.store.append("r1", sample_events("r1", 1, 1), expected_seq=0, lease=ghost)
        assert self.store.head("r1") == 0

    def test_renew_extends_and_a_lost_lease_cannot_be_renewed(self) -> None:
        lease = self.store.acquire_lease("r1", owner="a", ttl=10, now=NOW)
        renewed = self.store.renew_lease(lease, ttl=30, now=NOW + 5 * SECOND)
        assert renewed == replace(lease, expires=NOW + 35 * SECOND)
        assert self.store.get_lease("r1") == renewed
        with _raises(LeaseHeld):
            self.store.acquire_lease("r1", owner="b", ttl=10, now=NOW + 20 * SECOND)
        taken = self.store.acquire_lease("r1", owner="b", ttl=10, now=NOW + 35 * SECOND)
        with _raises(LeaseLost):
            self.store.renew_lease(renewed, ttl=30, now=NOW + 36 * SECOND)
        assert self.store.get_lease("r1") == taken
        with _raises(LeaseLost):
            self.store.renew_lease(Lease("r9", "a", 1, NOW), ttl=30, now=NOW)

    def test_release_lets_another_acquire_at_once(self) -> None:
        lease = self.store.acquire_lease("r1", owner="a", ttl=60, now=NOW)
        self.store.release_lease(lease)
        current = self.store.get_lease("r1")
        assert current is None or current.expires <= NOW
        taken = self.store.acquire_lease("r1", owner="b", ttl=60, now=NOW)
        assert taken.epoch > lease.epoch
        self.store.release_lease(lease)  # a lost lease: no-op
        assert self.store.get_lease("r1") == taken
        with _raises(LeaseHeld):
            self.store.acquire_lease("r1", owner="c", ttl=60, now=NOW)

    def test_leases_are_seen_through_a_second_handle(self) -> None:
        second = self.second_store()
        lease = self.store.acquire_lease("r1", owner="a", ttl=60, now=NOW)
        assert second.get_lease("r1") == lease
        with _raises(LeaseHeld):
            second.acquire_lease("r1", owner="b", ttl=60, now=NOW)
        self.store.append("r1", sample_events("r1", 1, 2), expected_seq=0, lease=lease)
        assert second.read("r1") == sample_events("r1", 1, 2)
        assert second.head("r1") == 2


class ResultCacheTests(StoreTestCase):
    """:class:`~statecore.backends.base.ResultCache`: entries newest first, expiry."""

    def test_cache_newest_first_and_expiry(self) -> None:
        self.store.cache_put("k", b"old", expires=NOW + 10 * SECOND)
        self.store.cache_put("k", b"new\x00\xff", expires=NOW + 20 * SECOND)
        self.store.cache_put("other", b"x", expires=NOW + 20 * SECOND)
        assert self.store.cache_get("k", now=NOW) == [
            CacheEntry("k", b"new\x00\xff", NOW + 20 * SECOND),
            CacheEntry("k", b"old", NOW + 10 * SECOND),
        ]
        assert [e.payload for e in self.store.cache_get("k", now=NOW + 10 * SECOND)] == [
            b"new\x00\xff"
        ]
        assert self.store.cache_get("k", now=NOW + 20 * SECOND) == []
        assert self.store.cache_get("missing", now=NOW) == []


class CancellationTests(StoreTestCase):
    """:class:`~statecore.backends.base.Cancellations`: requests kept per run."""

    def test_cancel_requests(self) -> None:
        assert not self.store.cancel_requested("r1", now=NOW)
        self.store.request_cancel("r1", now=NOW)
        assert self.store.cancel_requested("r1", now=NOW + SECOND)
        assert not self.store.cancel_requested("r2", now=NOW + SECOND)

    def test_asking_twice_is_asking_once_and_every_handle_sees_it(self) -> None:
        second = self.second_store()
        self.store.request_cancel("r1", now=NOW)
        second.request_cancel("r1", now=NOW + SECOND)
        assert second.cancel_requested("r1", now=NOW + 2 * SECOND)
        assert self.store.cancel_requested("r1", now=NOW + 2 * SECOND)

    def test_a_request_is_not_a_cache_entry_and_does_not_lapse(self) -> None:
        self.store.request_cancel("r1", now=NOW)
        # kept for the run, not in the result cache, and not for a day only
        assert self.store.cache_get("r1", now=NOW) == []
        assert self.store.cache_get(LEGACY_CANCEL_PREFIX + "r1", now=NOW) == []
        assert self.store.cancel_requested("r1", now=NOW + 400 * 86_400 * SECOND)

    def test_pruning_a_run_drops_its_request(self) -> None:
        done = _meta("r1", state="Cancelled", ended=NOW)
        self.store.append("r1", sample_events("r1", 1, 1), expected_seq=0, run_meta=done)
        self.store.request_cancel("r1", now=NOW)
        self.store.request_cancel("r2", now=NOW)
        assert self.store.prune(before=NOW + 1) == 1
        # a reused run id starts without the old run's request; other runs keep theirs
        assert not self.store.cancel_requested("r1", now=NOW + 2)
        assert self.store.cancel_requested("r2", now=NOW + 2)

    def test_odd_run_ids_keep_their_requests_apart(self) -> None:
        asked = []
        for run_id in ODD_RUN_IDS:
            try:
                self.store.request_cancel(run_id, now=NOW)
            except StatecoreError:
                continue
            asked.append(run_id)
        assert asked, "a store must accept at least some of these run ids"
        for run_id in asked:
            assert self.store.cancel_requested(run_id, now=NOW), run_id
        assert not self.store.cancel_requested("canary", now=NOW)


class StoreContractTests(
    EventLogTests, RunIndexTests, LeaseTests, ResultCacheTests, CancellationTests
):
    """The tests every :class:`~statecore.backends.base.Store` must pass: every
    capability's, and those that need them all at once."""

    def test_odd_run_ids_work_or_are_refused_cleanly(self) -> None:
        canary = sample_events("canary", 1, 2)
        self.store.append("canary", canary, expected_seq=0, run_meta=_meta("canary"))
        accepted = []
        for run_id in ODD_RUN_IDS:
            events = sample_events(run_id, 1, 2)
            try:
                self.store.append(run_id, events, expected_seq=0, run_meta=_meta(run_id))
            except StatecoreError:
                continue  # refusing is allowed; what follows checks nothing leaked
            accepted.append(run_id)
            assert self.store.head(run_id) == 2, run_id
            assert self.store.read(run_id) == events, run_id
            assert self.store.read(run_id, after=1) == events[1:], run_id
            assert self.store.get_run(run_id) == replace(_meta(run_id), head=2), run_id
            lease = self.store.acquire_lease(run_id, owner=run_id, ttl=1, now=NOW)
            assert self.store.get_lease(run_id) == lease, run_id
            self.store.cache_put(run_id, run_id.encode("utf-8", "surrogatepass"), expires=NOW + 1)
            assert len(self.store.cache_get(run_id, now=NOW)) == 1, run_id
        assert accepted, "a store must accept at least some of these run ids"
        for run_id in accepted:  # nothing of one run leaked into another
            assert self.store.read(run_id) == sample_events(run_id, 1, 2), run_id
        assert self.store.read("canary") == canary
        assert sorted(m.run_id for m in self.store.list_runs()) == sorted(["canary", *accepted])

    def test_usable_as_a_context_manager(self) -> None:
        with self.store as store:
            assert store is self.store
            store.append("r1", sample_events("r1", 1, 1), expected_seq=0)


def __getattr__(name: str) -> Any:
    # The state machine moved to store_machine, which imports this module's fixtures, so
    # the old import path is served lazily rather than by an import cycle.
    if name == "store_state_machine":
        from statecore.testing.store_machine import store_state_machine

        return store_state_machine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
