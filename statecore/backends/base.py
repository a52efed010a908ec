"""The store contract, split by capability, and :class:`Store`, the composition of them all.

A store keeps, per run, an append-only stream of :class:`~statecore.events.StoredEvent`
plus a little metadata (:class:`RunMeta`) that the runner supplies with each append, a
lease with an epoch (the fencing token), a result cache shared by runs, and the runs'
cancellation requests. Each of those is one small abstract class here:

* :class:`EventLog`: ``append``, ``read``, ``scan``, ``head``; every reader and writer.
* :class:`RunIndex`: ``get_run``, ``list_runs``, ``prune``; listings and clean-up.
* :class:`Leases`: ``acquire_lease``, ``renew_lease``, ``release_lease``, ``get_lease``;
  the driver's fencing.
* :class:`ResultCache`: ``cache_put``, ``cache_get``; tasks with ``cache_for``.
* :class:`Cancellations`: ``request_cancel``, ``cancel_requested``; ``statecore cancel``.

A backend implements :class:`Store` (all five; the runners need them all), and may build
it from mixins of its own, one per capability, the way the conformance suite in
:mod:`statecore.testing.stores` tests them one mixin per capability. Code that needs one
capability only can be typed by it (``def show(log: EventLog)``).

Rules every store keeps (the conformance suite in :mod:`statecore.testing` checks them):

* ``append`` is atomic, all or nothing. It succeeds only if the stream's head is
  ``expected_seq`` and the events are numbered ``expected_seq + 1 ...`` without gaps;
  otherwise :class:`~statecore.errors.ConcurrencyError`. With ``lease`` it also checks
  that the lease's epoch is the run's current one; otherwise
  :class:`~statecore.errors.LeaseLost`. ``run_meta`` is written in the same transaction.
* A store checks sequence and epoch only; it never parses payloads.
* Drivers' exceptions never leak: they become :class:`~statecore.errors.StoreUnavailable`
  (or another :class:`~statecore.errors.StatecoreError`).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from statecore.events import EventRow, StoredEvent

__all__ = [
    "LEGACY_CANCEL_PREFIX",
    "LEGACY_CANCEL_TTL_NS",
    "CacheEntry",
    "Cancellations",
    "EventLog",
    "Lease",
    "Leases",
    "ResultCache",
    "RunIndex",
    "RunMeta",
    "Store",
]

#: Before cancellations had their own place, ``request_cancel`` put a cache entry under
#: this prefix and the run id, living a day. Stores still honour such entries on read,
#: so a cancel requested by an older statecore is not lost.
LEGACY_CANCEL_PREFIX = "statecore-cancel:"
#: How long a legacy cancel entry lived.
LEGACY_CANCEL_TTL_NS = 86_400 * 10**9


@dataclass(frozen=True, slots=True)
class RunMeta:
    """What a store knows of a run without reading its stream.

    Attributes:
        run_id: the run's id.
        flow_name: the flow's name.
        state: the flow's current state name (``Running``, ``Success``, ...).
        started: UTC ns of the run's first event.
        ended: UTC ns when the flow finished, else None.
        head: the last sequence number (filled in by the store on read).
        parent_run: the run this one was rerun from, if any.
    """

    run_id: str
    flow_name: str
    state: str
    started: int
    ended: int | None = None
    head: int = 0
    parent_run: str | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """A driver's right to append to a run.

    Attributes:
        run_id: the run.
        owner: who holds it, ``host:pid:token``.
        epoch: the fencing token; every acquisition increments it.
        expires: UTC ns when it lapses unless renewed.
    """

    run_id: str
    owner: str
    epoch: int
    expires: int


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached task result: encoded state bytes, valid until ``expires`` (UTC ns)."""

    key: str
    payload: bytes
    expires: int


class EventLog(abc.ABC):
    """Per run, an append-only stream of events, numbered from 1 without gaps."""

    @abc.abstractmethod
    def append(
        self,
        run_id: str,
        events: Sequence[StoredEvent],
        *,
        expected_seq: int,
        lease: Lease | None = None,
        run_meta: RunMeta | None = None,
    ) -> int:
        """Append ``events`` (numbered ``expected_seq + 1 ...``) atomically.

        Returns:
            The new head sequence number.

        Raises:
            ConcurrencyError: the head is not ``expected_seq`` or numbering is wrong.
            LeaseLost: ``lease`` is not the run's current lease epoch.
            StoreUnavailable: the store cannot be reached.
        """

    @abc.abstractmethod
    def read(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        """Events with ``seq > after`` in order, at most ``limit`` of them."""

    def scan(self, run_id: str, *, after: int = 0) -> Iterator[EventRow]:
        """The events with ``seq > after`` in order, as the rows replay folds:
        ``(seq, kind, ts, payload)``.

        Replay needs nothing else of the envelope, so a store may read these fields more
        cheaply than whole events (SQLite does). This default reads whole events. A store
        that overrides it must give exactly what :meth:`read` gives (the conformance
        suite checks).
        """
        for event in self.read(run_id, after=after):
            yield event.seq, event.kind, event.ts, event.payload

    @abc.abstractmethod
    def head(self, run_id: str) -> int:
        """The run's last sequence number, 0 for an unknown run."""


class RunIndex(abc.ABC):
    """What is known of each run without reading its stream, and pruning finished runs."""

    @abc.abstractmethod
    def get_run(self, run_id: str) -> RunMeta | None:
        """The run's metadata, or None."""

    @abc.abstractmethod
    def list_runs(
        self,
        *,
        flow_name: str | None = None,
        state: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
    ) -> list[RunMeta]:
        """Runs, newest first, filtered by flow name, state and start time (UTC ns)."""

    @abc.abstractmethod
    def prune(self, *, before: int) -> int:
        """Delete finished runs that ended before ``before`` (UTC ns); return how many.

        A pruned run's events, metadata, lease and cancellation request go: its id
        reads as unknown and may be reused, starting again at seq 1. Its last lease
        epoch stays behind (one small record per pruned run id), so no lease issued
        before the prune is current after it and the next lease on the id is numbered
        higher.
        """


class Leases(abc.ABC):
    """One lease per run, with an epoch that only grows: the fencing token of appends."""

    @abc.abstractmethod
    def acquire_lease(self, run_id: str, *, owner: str, ttl: float, now: int) -> Lease:
        """Take the run's lease for ``ttl`` seconds with a new epoch, higher than any
        epoch issued for ``run_id`` before, even if the run was pruned since.

        Raises:
            LeaseHeld: another owner holds an unexpired lease (the message names it).
        """

    @abc.abstractmethod
    def renew_lease(self, lease: Lease, *, ttl: float, now: int) -> Lease:
        """Extend ``lease``. Raises LeaseLost if its epoch is no longer current."""

    @abc.abstractmethod
    def release_lease(self, lease: Lease) -> None:
        """Give the lease up (a no-op if it was already lost)."""

    @abc.abstractmethod
    def get_lease(self, run_id: str) -> Lease | None:
        """The run's current lease (possibly expired), or None."""


class ResultCache(abc.ABC):
    """Cached task results shared by runs, each entry valid until it expires."""

    @abc.abstractmethod
    def cache_put(self, key: str, payload: bytes, *, expires: int) -> None:
        """Add a cached result under ``key``."""

    @abc.abstractmethod
    def cache_get(self, key: str, *, now: int) -> list[CacheEntry]:
        """Unexpired entries under ``key``, newest first."""


class Cancellations(abc.ABC):
    """Requests to cancel a run, kept for the run (not in the result cache)."""

    @abc.abstractmethod
    def request_cancel(self, run_id: str, *, now: int) -> None:
        """Ask the run's driver to cancel (``statecore cancel``) at UTC ns ``now``.

        The request stands until the run is pruned; asking twice is asking once.
        """

    @abc.abstractmethod
    def cancel_requested(self, run_id: str, *, now: int) -> bool:
        """True when :meth:`request_cancel` was called for the run (by this statecore,
        or by an older one that kept the request as a cache entry, until it expired)."""


class Store(EventLog, RunIndex, Leases, ResultCache, Cancellations):
    """The contract every backend implements: all five capabilities, one handle.

    All options are keyword-only.
    """

    #: the URL this store was opened from (for messages)
    url: str = "?"

    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
