"""The journal: the runner's side of the log, with group commit and the hash chain.

Events are numbered, chained and buffered here, then appended to the store in groups:
when the buffer holds ``max_events`` events, when its oldest event is nearly ``max_delay``
seconds old, and always on :meth:`Journal.flush`, which the runner calls before it returns,
before a state handler or ``on_failure`` callback runs, before it releases its lease, and
before it waits longer than the window. While the driver's thread is away
running a body inline (:meth:`Journal.leave` ... :meth:`Journal.come_back`), a committer
thread (:meth:`Journal.start_committer`) commits what falls due meanwhile, so a long
body does not hold the window open. A crash loses at most one window: those tasks run
again (at least once), and the log stays a prefix of what happened.

The window is counted from where it starts for the user: an outcome's age runs from the
instant its body ended (measured on the worker, carried as ``ended_at``), not from when
the driver got round to buffering it, and a group is committed early enough for the
commit itself (as long as the slowest recent one) to end inside the window.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from statecore.backends.base import Lease, RunMeta, Store
from statecore.errors import ConcurrencyError, LeaseLost
from statecore.events import (
    Body,
    StoredEvent,
    chain_digest,
    chain_hash,
    encode_body,
    hash_start,
    make_event,
)

__all__ = ["Journal", "hmac_key"]


def hmac_key() -> bytes | None:
    """The hash-chain key from ``STATECORE_HMAC_KEY``, if set."""
    key = os.environ.get("STATECORE_HMAC_KEY")
    if not key:
        return None
    return key.encode()[:64]


class Journal:
    """Numbers, chains, buffers and group-commits one run's events.

    Args:
        store: where events go.
        run_id: the run.
        head: the last sequence number already in the store.
        last_event: the event at ``head`` (its hash continues the chain).
        lease: the driver's lease (its epoch fences every append).
        max_events: group-commit window, in events.
        max_delay: group-commit window, in seconds.
    """

    def __init__(
        self,
        store: Store,
        run_id: str,
        *,
        head: int = 0,
        last_event: StoredEvent | None = None,
        lease: Lease | None = None,
        max_events: int = 512,
        max_delay: float = 0.02,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.head = head
        self.durable = head
        self.key = hmac_key()
        self.prev_hash = chain_hash(last_event, self.key) if last_event is not None else b""
        # what each event's hash needs beside its own fields, made once
        self._hash_start = hash_start(self.key or b"")
        self._run_id_bytes = run_id.encode()
        self._kind_bytes: dict[str, bytes] = {}
        self.lease = lease
        self.max_events = max_events
        self.max_delay_ns = int(max_delay * 1e9)
        self.buffer: list[StoredEvent] = []
        #: monotonic ns at which the oldest buffered event (or its body's end) happened
        self._first_buffered = 0
        #: monotonic ns at which the oldest buffered event was buffered
        self._first_added = 0
        #: commit a group once its oldest event is this old: the window less the time a
        #: slow recent commit took and a twentieth for waking up, never under a quarter
        self._due_ns = self.max_delay_ns
        self._commit_ns = 0
        self.meta: RunMeta | None = None
        #: held by the committer thread while it commits, and by the driver's thread to
        #: come back from a body (so the two never touch the buffer at once)
        self.lock = threading.Lock()
        self._away = False
        self._stop_committer: threading.Event | None = None

    def add(self, body: Body, ts: int) -> StoredEvent:
        """Encode, number and buffer one event (raises SerializationError, writing nothing)."""
        return self.add_payload(body.kind, encode_body(body), ts)

    def add_payload(
        self, kind: str, payload: bytes, ts: int, ended: int | None = None
    ) -> StoredEvent:
        """Number, chain and buffer an encoded event; commit when the window is full.

        ``ended`` is when the body whose outcome this is ended (UTC ns, measured where it
        ran): the window of its outcome started then."""
        self.head += 1
        seq, prev, lease = self.head, self.prev_hash, self.lease
        epoch = 0 if lease is None else lease.epoch
        event = make_event(self.run_id, seq, epoch, prev, kind, ts, payload)
        kind_bytes = self._kind_bytes.get(kind)
        if kind_bytes is None:
            kind_bytes = self._kind_bytes[kind] = kind.encode()
        self.prev_hash = chain_digest(
            self._hash_start, prev, self._run_id_bytes, seq, epoch, kind_bytes, ts, payload
        )
        buffer = self.buffer
        now = time.monotonic_ns()
        start = now if ended is None else now - max(0, time.time_ns() - ended)
        if not buffer:
            self._first_buffered = start
            self._first_added = now
        elif start < self._first_buffered:
            self._first_buffered = start
        buffer.append(event)
        # Here only the time since buffering counts: outcomes that ended long ago (a
        # driver behind its workers) are committed as one group once the caller has
        # buffered what is ready, on its due() check, not one commit each.
        if len(buffer) >= self.max_events or now - self._first_added >= self._due_ns:
            self._flush()
        return event

    def due(self) -> bool:
        """True when the buffered events must be committed now to end inside the window."""
        return bool(self.buffer) and (time.monotonic_ns() - self._first_buffered >= self._due_ns)

    def until_due(self) -> float:
        """Seconds until the buffered events are due (0 if they are; the whole window
        if nothing is buffered)."""
        if not self.buffer:
            return self.max_delay_ns / 1e9
        left = self._due_ns - (time.monotonic_ns() - self._first_buffered)
        return max(0.0, left / 1e9)

    def flush(self) -> None:
        """Append everything buffered (and the run's metadata) in one transaction."""
        self._flush()

    def leave(self) -> None:
        """The driver's thread goes to run a body: the committer may commit meanwhile.
        Until :meth:`come_back`, the driver's thread touches nothing of the journal."""
        self._away = True

    def come_back(self) -> None:
        """The driver's thread is back (it waits for a commit under way to end)."""
        with self.lock:
            self._away = False

    def _flush(self) -> None:
        if not self.buffer and self.meta is None:
            return
        batch, self.buffer = self.buffer, []
        meta, self.meta = self.meta, None
        began = time.monotonic_ns()
        try:
            self.durable = self.store.append(
                self.run_id, batch, expected_seq=self.durable, lease=self.lease, run_meta=meta
            )
            took = time.monotonic_ns() - began
            # a slow commit counts at once and is forgotten over the next few (an eighth
            # each): the group must start early enough for a slow commit to end in time
            self._commit_ns = max(took, self._commit_ns - self._commit_ns // 8)
            window = self.max_delay_ns
            self._due_ns = max(window - self._commit_ns - window // 20, window // 4)
        except BaseException as exc:
            # Nothing of the batch was written (appends are all-or-nothing): keep it so a
            # retry of flush() can still write it in order.
            self.buffer = batch + self.buffer
            self.meta = self.meta or meta
            if isinstance(exc, ConcurrencyError):
                self._raise_if_fenced(exc)
            raise

    def start_committer(self) -> None:
        """Commit from a thread of its own, while the driver's thread is away, whatever
        is due (as :meth:`due`), until :meth:`stop_committer` (a failed commit is left
        for the driver's next flush, which raises its error)."""
        if self._stop_committer is not None:
            return
        stop = self._stop_committer = threading.Event()
        idle = max(self.max_delay_ns / 4e9, 0.001)

        def commit() -> None:
            # wakes when the oldest buffered event falls due (or every quarter window
            # while nothing is buffered, or after a failed commit), not on a fixed beat
            # that could overshoot the window
            wait = idle
            while not stop.wait(wait):
                wait = self.until_due() if self._away and self.buffer else idle
                if not self._away or not self.due():
                    continue
                with self.lock, contextlib.suppress(Exception):  # the driver's flush raises it
                    if self._away and self.buffer and not stop.is_set():
                        self._flush()
                wait = idle

        threading.Thread(target=commit, name="statecore-commit", daemon=True).start()

    def stop_committer(self) -> None:
        """Stop the committer thread (it commits nothing more once this returns)."""
        stop, self._stop_committer = self._stop_committer, None
        if stop is not None:
            with self.lock:
                stop.set()

    def _raise_if_fenced(self, exc: ConcurrencyError) -> None:
        """A head that moved under a leased driver means another driver took over."""
        if self.lease is None:
            return
        current = self.store.get_lease(self.run_id)
        if current is not None and current.epoch != self.lease.epoch:
            raise LeaseLost(
                f"run {self.run_id!r}: another driver ({current.owner}, lease epoch "
                f"{current.epoch}) took the run over from this one (epoch {self.lease.epoch})"
            ) from exc

    def set_meta(self, meta: RunMeta) -> None:
        """Run metadata to write with the next append."""
        self.meta = meta

    def describe(self) -> Mapping[str, Any]:
        """Numbers for diagnostics."""
        return {"head": self.head, "durable": self.durable, "buffered": len(self.buffer)}
