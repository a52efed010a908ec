"""The differential store test: several stores and a reference model, step by random step.

:func:`store_state_machine` builds a Hypothesis state machine that runs the same random
appends, reads, lease moves, cache writes and prunes on every store it is given and on
a plain in-memory model of what a store should answer, and checks after every step
that they all agree::

    from hypothesis.stateful import run_state_machine_as_test
    from statecore.backends import MemoryStore
    from statecore.testing import store_state_machine

    def test_my_store_agrees() -> None:
        run_state_machine_as_test(store_state_machine(lambda: [MemoryStore(), MyStore()]))

Hypothesis is imported when :func:`store_state_machine` is called, not when this module
is imported, so the rest of :mod:`statecore.testing` works without it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from operator import methodcaller
from typing import TYPE_CHECKING

from statecore.backends.base import CacheEntry, Lease, RunMeta, Store
from statecore.errors import ConcurrencyError, LeaseHeld, LeaseLost, StatecoreError
from statecore.events import StoredEvent
from statecore.testing.stores import NOW, SECOND, sample_events

if TYPE_CHECKING:
    from hypothesis.stateful import RuleBasedStateMachine

__all__ = ["store_state_machine"]

_MACHINE_RUN_IDS = ("run-1", "run 2", "run:3", "rün-4'")
_OWNERS = ("alpha", "beta")


@dataclass
class _Reference:
    """What every store should answer, kept as plainly as possible."""

    streams: dict[str, list[StoredEvent]]
    meta: dict[str, RunMeta]
    leases: dict[str, Lease]
    cache: dict[str, list[CacheEntry]]
    # The last epoch issued per run id. Prune drops the lease but not this, so epochs
    # never repeat for a run id and no lease from before a prune is current after it.
    epochs: dict[str, int] = field(default_factory=dict)
    # Runs whose cancellation was requested; a prune of the run drops its request.
    cancels: set[str] = field(default_factory=set)

    def append(
        self,
        run_id: str,
        events: Sequence[StoredEvent],
        expected_seq: int,
        lease: Lease | None,
        run_meta: RunMeta | None,
    ) -> int:
        stream = self.streams.setdefault(run_id, [])
        if len(stream) != expected_seq:
            raise ConcurrencyError
        current = self.leases.get(run_id)
        if lease is not None and (0 if current is None else current.epoch) != lease.epoch:
            raise LeaseLost
        if [(e.run_id, e.seq) for e in events] != [
            (run_id, expected_seq + i) for i in range(1, len(events) + 1)
        ]:
            raise ConcurrencyError
        stream.extend(events)
        if run_meta is not None:
            self.meta[run_id] = run_meta
        return len(stream)

    def get_run(self, run_id: str) -> RunMeta | None:
        meta = self.meta.get(run_id)
        return None if meta is None else replace(meta, head=len(self.streams.get(run_id, [])))

    def list_runs(self, flow_name: str | None) -> list[RunMeta]:
        runs = [self.get_run(run_id) for run_id in self.meta]
        found = [m for m in runs if m is not None and flow_name in (None, m.flow_name)]
        return sorted(found, key=lambda m: (m.started, m.run_id), reverse=True)

    def acquire(self, run_id: str, owner: str, ttl: float, now: int) -> Lease:
        current = self.leases.get(run_id)
        if current is not None and current.expires > now and current.owner != owner:
            raise LeaseHeld
        epoch = self.epochs.get(run_id, 0) + 1
        self.epochs[run_id] = epoch
        self.leases[run_id] = Lease(run_id, owner, epoch, now + int(ttl * 1e9))
        return self.leases[run_id]

    def renew(self, lease: Lease, ttl: float, now: int) -> Lease:
        current = self.leases.get(lease.run_id)
        if current is None or current.epoch != lease.epoch:
            raise LeaseLost
        self.leases[lease.run_id] = replace(lease, expires=now + int(ttl * 1e9))
        return self.leases[lease.run_id]

    def release(self, lease: Lease) -> None:
        current = self.leases.get(lease.run_id)
        if current is not None and current.epoch == lease.epoch:
            self.leases[lease.run_id] = replace(current, expires=0)

    def prune(self, before: int) -> int:
        doomed = [m.run_id for m in self.meta.values() if m.ended is not None and m.ended < before]
        for run_id in doomed:
            del self.meta[run_id]
            self.streams.pop(run_id, None)
            self.leases.pop(run_id, None)
            self.cancels.discard(run_id)
        return len(doomed)


def _outcome(call: Callable[[], object]) -> tuple[str, object]:
    """What a call did, comparable across stores: its result, or its error's type."""
    try:
        return ("returned", call())
    except StatecoreError as exc:
        return ("raised", _contract_error(exc))


def _contract_error(exc: StatecoreError) -> type[StatecoreError]:
    for kind in (ConcurrencyError, LeaseLost, LeaseHeld):
        if isinstance(exc, kind):
            return kind
    return type(exc)


def store_state_machine(make_stores: Callable[[], list[Store]]) -> type[RuleBasedStateMachine]:
    """A Hypothesis state machine that checks several stores agree with each other.

    Every step (an append at the head, or one with a stale ``expected_seq``, misnumbered
    events or a stale lease; a read; a lease acquisition, renewal or release; a cache
    write and read; a cancellation request and its check; a prune; the clock moving on)
    is done on each store and on a plain reference model; the results, or the types of
    the errors raised, must be the same everywhere. After every step each run's head,
    metadata and lease, and the run listing, must agree too.

    Args:
        make_stores: returns new, empty stores; called once per generated example. The
            stores are closed when the example ends.

    Returns:
        A ``RuleBasedStateMachine`` subclass; run it with ``machine.TestCase`` (a
        ``unittest.TestCase``) or ``hypothesis.stateful.run_state_machine_as_test``.

    Raises:
        ImportError: Hypothesis is not installed (``pip install 'statecore[testing]'``).
    """
    try:
        from hypothesis import strategies as st
        from hypothesis.stateful import (
            RuleBasedStateMachine,
            invariant,
            precondition,
            rule,
        )
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "store_state_machine needs Hypothesis: pip install 'statecore[testing]'"
        ) from exc

    run_ids = st.sampled_from(_MACHINE_RUN_IDS)

    class StoresAgree(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.stores = make_stores()
            if not self.stores:
                raise ValueError("make_stores() returned no store")
            self.model = _Reference({}, {}, {}, {})
            self.now = NOW
            self.leases: list[Lease] = []
            self.cache_keys: list[str] = []

        def teardown(self) -> None:
            for store in self.stores:
                store.close()

        def agree(self, what: str, call: Callable[[Store], object], expected: object) -> None:
            for store in self.stores:
                got = _outcome(functools.partial(call, store))
                assert got == expected, (
                    f"{what}: {type(store).__name__} ({store.url}) gave {got!r}, "
                    f"the reference {expected!r}"
                )

        # -- the log ---------------------------------------------------------------------

        @rule(
            run_id=run_ids,
            count=st.integers(0, 4),
            with_lease=st.booleans(),
            meta=st.sampled_from(["none", "none", "running", "ended"]),
            flow=st.sampled_from(["etl", "report"]),
        )
        def append(self, run_id: str, count: int, with_lease: bool, meta: str, flow: str) -> None:
            """An append as a live driver makes it: at the head, with its lease if any."""
            lease = self.model.leases.get(run_id) if with_lease else None
            self._append(run_id, count, 0, lease, False, meta, flow)

        @rule(
            run_id=run_ids,
            count=st.integers(0, 3),
            offset=st.sampled_from([0, -1, 1, -3, 2]),
            lease_choice=st.sampled_from(["none", "current", "stale"]),
            misnumber=st.booleans(),
            meta=st.sampled_from(["none", "running", "ended"]),
        )
        def append_badly(
            self,
            run_id: str,
            count: int,
            offset: int,
            lease_choice: str,
            misnumber: bool,
            meta: str,
        ) -> None:
            """An append that may be stale, misnumbered or fenced off."""
            lease = self._lease_for(run_id, lease_choice)
            self._append(run_id, count, offset, lease, misnumber, meta, "etl")

        def _append(
            self,
            run_id: str,
            count: int,
            offset: int,
            lease: Lease | None,
            misnumber: bool,
            meta: str,
            flow: str,
        ) -> None:
            head = len(self.model.streams.get(run_id, []))
            expected_seq = max(head + offset, 0)
            events = sample_events(run_id, expected_seq + 1, count, tag=str(self.now))
            if misnumber and events:
                events[-1] = replace(events[-1], seq=events[-1].seq + 1)
            # Each run has its own start time so "newest first" has no ties to break.
            started = NOW + _MACHINE_RUN_IDS.index(run_id) * SECOND
            run_meta = None
            if meta != "none":
                ended = self.now if meta == "ended" else None
                run_meta = RunMeta(run_id, flow, meta.capitalize(), started, ended)
            expected = _outcome(
                lambda: self.model.append(run_id, events, expected_seq, lease, run_meta)
            )
            self.agree(
                f"append({run_id!r}, seqs={[e.seq for e in events]}, "
                f"expected_seq={expected_seq}, lease={lease}, run_meta={run_meta})",
                lambda store: store.append(
                    run_id, events, expected_seq=expected_seq, lease=lease, run_meta=run_meta
                ),
                expected,
            )

        def _lease_for(self, run_id: str, choice: str) -> Lease | None:
            if choice == "none":
                return None
            current = self.model.leases.get(run_id)
            if choice == "current" and current is not None:
                return current
            stale = [lease for lease in self.leases if lease.run_id == run_id]
            if current is not None:
                stale = [lease for lease in stale if lease.epoch != current.epoch]
            return stale[-1] if stale else Lease(run_id, "ghost", 99, self.now)

        @rule(
            run_id=run_ids,
            after=st.integers(0, 12),
            limit=st.one_of(st.none(), st.integers(0, 5)),
        )
        def read(self, run_id: str, after: int, limit: int | None) -> None:
            stream = self.model.streams.get(run_id, [])
            end = len(stream) if limit is None else after + limit
            self.agree(
                f"read({run_id!r}, after={after}, limit={limit})",
                lambda store: store.read(run_id, after=after, limit=limit),
                ("returned", stream[after:end]),
            )

        # -- leases ----------------------------------------------------------------------

        @rule(run_id=run_ids, owner=st.sampled_from(_OWNERS), ttl=st.sampled_from([1, 5, 30]))
        def acquire(self, run_id: str, owner: str, ttl: int) -> None:
            now = self.now
            expected = _outcome(lambda: self.model.acquire(run_id, owner, ttl, now))
            self.agree(
                f"acquire_lease({run_id!r}, owner={owner!r}, ttl={ttl}, now={now})",
                lambda store: store.acquire_lease(run_id, owner=owner, ttl=ttl, now=now),
                expected,
            )
            if expected[0] == "returned":
                self.leases.append(self.model.leases[run_id])

        @precondition(lambda self: bool(self.leases))
        @rule(data=st.data(), ttl=st.sampled_from([1, 5, 30]))
        def renew(self, data: st.DataObject, ttl: int) -> None:
            lease = data.draw(st.sampled_from(self.leases), label="lease")
            now = self.now
            expected = _outcome(lambda: self.model.renew(lease, ttl, now))
            self.agree(
                f"renew_lease({lease}, ttl={ttl}, now={now})",
                lambda store: store.renew_lease(lease, ttl=ttl, now=now),
                expected,
            )

        @precondition(lambda self: bool(self.leases))
        @rule(data=st.data())
        def release(self, data: st.DataObject) -> None:
            lease = data.draw(st.sampled_from(self.leases), label="lease")
            self.model.release(lease)
            self.agree(
                f"release_lease({lease})",
                lambda store: store.release_lease(lease),
                ("returned", None),
            )

        @rule(seconds=st.sampled_from([0, 1, 3, 10, 40]))
        def tick(self, seconds: int) -> None:
            self.now += seconds * SECOND

        # -- cache and pruning -----------------------------------------------------------

        @rule(
            key=st.sampled_from(["k1", "k:2"]),
            put=st.booleans(),
            ttl=st.integers(0, 20),
            payload=st.sampled_from([b"", b"a", b"\x00\xff"]),
        )
        def cache(self, key: str, put: bool, ttl: int, payload: bytes) -> None:
            now = self.now
            if put:
                entry = CacheEntry(key, payload, now + ttl * SECOND)
                self.model.cache.setdefault(key, []).insert(0, entry)
                self.agree(
                    f"cache_put({key!r}, {payload!r}, expires={entry.expires})",
                    lambda store: store.cache_put(key, payload, expires=entry.expires),
                    ("returned", None),
                )
            live = [e for e in self.model.cache.get(key, []) if e.expires > now]
            self.agree(
                f"cache_get({key!r}, now={now})",
                lambda store: store.cache_get(key, now=now),
                ("returned", live),
            )

        @rule(run_id=run_ids, ask=st.booleans())
        def cancel(self, run_id: str, ask: bool) -> None:
            now = self.now
            if ask:
                self.model.cancels.add(run_id)
                self.agree(
                    f"request_cancel({run_id!r}, now={now})",
                    lambda store: store.request_cancel(run_id, now=now),
                    ("returned", None),
                )
            self.agree(
                f"cancel_requested({run_id!r}, now={now})",
                lambda store: store.cancel_requested(run_id, now=now),
                ("returned", run_id in self.model.cancels),
            )

        # back=-1 also prunes runs that ended at this very moment, so a run id is pruned
        # and leased again (where epochs must keep rising) without waiting for a tick.
        @rule(back=st.sampled_from([-1, 0, 5, 60]))
        def prune(self, back: int) -> None:
            before = self.now - back * SECOND
            expected = _outcome(lambda: self.model.prune(before))
            self.agree(
                f"prune(before={before})", lambda store: store.prune(before=before), expected
            )

        # -- after every step ------------------------------------------------------------

        @invariant()
        def runs_agree(self) -> None:
            for run_id in _MACHINE_RUN_IDS:
                self.agree(
                    f"head({run_id!r})",
                    methodcaller("head", run_id),
                    ("returned", len(self.model.streams.get(run_id, []))),
                )
                self.agree(
                    f"get_run({run_id!r})",
                    methodcaller("get_run", run_id),
                    ("returned", self.model.get_run(run_id)),
                )
                self.agree(
                    f"get_lease({run_id!r})",
                    methodcaller("get_lease", run_id),
                    ("returned", self.model.leases.get(run_id)),
                )
            for flow_name in (None, "etl"):
                self.agree(
                    f"list_runs(flow_name={flow_name!r})",
                    methodcaller("list_runs", flow_name=flow_name),
                    ("returned", self.model.list_runs(flow_name)),
                )

    return StoresAgree
