"""The in-memory store: a real implementation of the contract, for tests and notebooks."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

from statecore.backends.base import CacheEntry, Lease, RunMeta, Store
from statecore.errors import ConcurrencyError, LeaseHeld, LeaseLost
from statecore.events import StoredEvent

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Keeps everything in this process's memory; shared by the threads of one process."""

    def __init__(self, *, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.Lock()
        self._streams: dict[str, list[StoredEvent]] = {}
        self._meta: dict[str, RunMeta] = {}
        self._leases: dict[str, Lease] = {}
        # The last epoch issued per run id. Prune leaves it behind when it drops the
        # run and its lease, so a reused id's next lease is numbered above every
        # lease an old driver may still hold.
        self._epochs: dict[str, int] = {}
        self._cache: dict[str, list[CacheEntry]] = {}
        # run id -> when its cancellation was first requested (UTC ns)
        self._cancels: dict[str, int] = {}

    def append(
        self,
        run_id: str,
        events: Sequence[StoredEvent],
        *,
        expected_seq: int,
        lease: Lease | None = None,
        run_meta: RunMeta | None = None,
    ) -> int:
        with self._lock:
            stream = self._streams.get(run_id, [])
            if len(stream) != expected_seq:
                raise ConcurrencyError(
                    f"run {run_id!r}: expected head {expected_seq}, found {len(stream)}"
                )
            # Checked against the lease, not the epoch counter: after a prune no lease is
            # current, so no lease issued before it may write to the reused run id.
            current = self._leases.get(run_id)
            epoch = 0 if current is None else current.epoch
            if lease is not None and epoch != lease.epoch:
                raise LeaseLost(
                    f"run {run_id!r}: lease epoch {lease.epoch} is no longer current (now {epoch})"
                )
            for offset, event in enumerate(events, start=1):
                if event.run_id != run_id or event.seq != expected_seq + offset:
                    raise ConcurrencyError(
                        f"run {run_id!r}: event numbered {event.seq} where "
                        f"{expected_seq + offset} was expected"
                    )
            if not events and run_meta is None:
                return expected_seq
            self._streams.setdefault(run_id, stream).extend(events)
            if run_meta is not None:
                self._meta[run_id] = run_meta
            return expected_seq + len(events)

    def read(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        with self._lock:
            stream = self._streams.get(run_id, [])
            # Negative bounds would count from the end of the list; clamp them to "none".
            after = max(after, 0)
            end = len(stream) if limit is None else min(len(stream), after + max(limit, 0))
            return stream[after:end]

    def head(self, run_id: str) -> int:
        with self._lock:
            return len(self._streams.get(run_id, []))

    def get_run(self, run_id: str) -> RunMeta | None:
        with self._lock:
            meta = self._meta.get(run_id)
            if meta is None:
                return None
            return replace(meta, head=len(self._streams.get(run_id, [])))

    def list_runs(
        self,
        *,
        flow_name: str | None = None,
        state: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
    ) -> list[RunMeta]:
        with self._lock:
            rows = [
                replace(m, head=len(self._streams.get(m.run_id, [])))
                for m in self._meta.values()
                if (flow_name is None or m.flow_name == flow_name)
                and (state is None or m.state == state)
                and (since is None or m.started >= since)
                and (until is None or m.started < until)
            ]
        rows.sort(key=lambda m: (m.started, m.run_id), reverse=True)
        return rows if limit is None else rows[: max(limit, 0)]

    def prune(self, *, before: int) -> int:
        with self._lock:
            doomed = [
                m.run_id for m in self._meta.values() if m.ended is not None and m.ended < before
            ]
            for run_id in doomed:
                self._meta.pop(run_id, None)
                self._streams.pop(run_id, None)
                self._leases.pop(run_id, None)
                self._cancels.pop(run_id, None)
            return len(doomed)

    def acquire_lease(self, run_id: str, *, owner: str, ttl: float, now: int) -> Lease:
        with self._lock:
            current = self._leases.get(run_id)
            if current is not None and current.expires > now and current.owner != owner:
                raise LeaseHeld(
                    f"run {run_id!r} is being driven by {current.owner} "
                    f"(lease epoch {current.epoch})"
                )
            epoch = self._epochs.get(run_id, 0) + 1
            self._epochs[run_id] = epoch
            lease = Lease(run_id, owner, epoch, now + int(ttl * 1e9))
            self._leases[run_id] = lease
            return lease

    def renew_lease(self, lease: Lease, *, ttl: float, now: int) -> Lease:
        with self._lock:
            current = self._leases.get(lease.run_id)
            if current is None or current.epoch != lease.epoch:
                raise LeaseLost(f"run {lease.run_id!r}: lease epoch {lease.epoch} was taken over")
            renewed = replace(lease, expires=now + int(ttl * 1e9))
            self._leases[lease.run_id] = renewed
            return renewed

    def release_lease(self, lease: Lease) -> None:
        with self._lock:
            current = self._leases.get(lease.run_id)
            if current is not None and current.epoch == lease.epoch:
                self._leases[lease.run_id] = replace(current, expires=0)

    def get_lease(self, run_id: str) -> Lease | None:
        with self._lock:
            return self._leases.get(run_id)

    def cache_put(self, key: str, payload: bytes, *, expires: int) -> None:
        with self._lock:
            self._cache.setdefault(key, []).insert(0, CacheEntry(key, payload, expires))

    def cache_get(self, key: str, *, now: int) -> list[CacheEntry]:
        with self._lock:
            return [e for e in self._cache.get(key, []) if e.expires > now]

    def request_cancel(self, run_id: str, *, now: int) -> None:
        with self._lock:
            self._cancels.setdefault(run_id, now)

    def cancel_requested(self, run_id: str, *, now: int) -> bool:
        with self._lock:
            return run_id in self._cancels
