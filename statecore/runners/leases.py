"""Leases: a run's driver holds one, with an epoch that fences every append.

The owner string is ``host:pid:token``. A lease lapses unless renewed; a holder on this
host whose process is gone can be taken over at once (:func:`holder_is_dead`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

from statecore.backends.base import Lease, Store
from statecore.errors import LeaseLost, StatecoreError

__all__ = ["LeaseKeeper", "holder_is_dead", "new_owner", "now_ns"]


def now_ns() -> int:
    """UTC now in integer nanoseconds (the shell's one clock)."""
    return time.time_ns()


def new_owner() -> str:
    """A fresh owner id for this process: ``host:pid:token``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_is_dead(owner: str) -> bool:
    """True when ``owner`` (``host:pid:token``) is a process of this host that is gone."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LeaseKeeper:
    """Renews the lease in the background; records a loss for the driver to act on."""

    def __init__(self, store: Store, lease: Lease, ttl: float, every: float) -> None:
        self.store = store
        self.lease = lease
        self.ttl = ttl
        self.every = every
        self.lost: BaseException | None = None
        #: UTC ns until which a body may start without waiting (see check_start)
        self.start_by = self._start_by(lease)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="statecore-lease", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            # never earlier than the expiry it has: a lease taken over "after" a dead
            # holder's expiry must stay held past that instant (see DriverSession.acquire)
            lease = self.lease
            now = max(now_ns(), lease.expires - int(self.ttl * 1e9))
            try:
                renewed = self.store.renew_lease(lease, ttl=self.ttl, now=now)
            except LeaseLost as exc:
                self.lost = exc
                return
            except StatecoreError:
                continue
            self.lease, self.start_by = renewed, self._start_by(renewed)

    def _start_by(self, lease: Lease) -> int:
        """The lease's expiry less a tenth of its ttl (the spare :meth:`check_start`
        keeps)."""
        return lease.expires - int(self.ttl * 1e8)

    def check_start(self) -> None:
        """Return once a body may start under this lease: it has not lapsed by this
        process's clock (with a tenth of its ttl to spare). Past that, this process was
        frozen or starved, or the store is slow: wait for the keeper's next renewal, which
        either extends the lease or finds another driver took the run over.

        Raises:
            LeaseLost: another process has taken the run over, or the keeper stopped.
        """
        while True:
            if self.lost is not None:
                raise LeaseLost(
                    f"run {self.lease.run_id!r}: no body starts, the lease is lost ({self.lost})"
                )
            if now_ns() < self.start_by:
                return
            if self._stop.is_set():
                raise LeaseLost(f"run {self.lease.run_id!r}: the lease keeper has stopped")
            time.sleep(min(self.every, 0.05))

    def stop(self) -> None:
        """Stop renewing (the caller releases the lease)."""
        self._stop.set()
        self._thread.join(timeout=self.every + 1)
