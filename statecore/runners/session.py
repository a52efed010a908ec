"""A driver's session: the lease it holds on a run, and the notes that say so in the log.

Each process that drives a run takes the run's lease first (taking it over at once from a
holder of this host whose process is gone), then reads the log under it, and logs a
``session-start`` note (owner, host, pid, lease epoch, statecore version, why: run, resume
or takeover). It ends with a ``session-end`` note; a session with no end is a crash, which
the next session names in a ``session-lost`` note, with when the dead driver was last known
alive (its last event, or its lease's last renewal if later).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import threading
import time
from collections.abc import Callable

from statecore.backends.base import Lease, Store
from statecore.decide import entity_runs
from statecore.errors import LeaseHeld, LeaseLost, StatecoreError
from statecore.fold import RunView
from statecore.runners.execution import RunOptions
from statecore.runners.leases import LeaseKeeper, holder_is_dead, new_owner, now_ns
from statecore.runners.recorder import Recorder
from statecore.sessions import LostSession, iso_ns, open_session
from statecore.states import Looped, Running

__all__ = ["DriverSession", "terminate_as_exit", "version"]


@functools.cache
def version() -> str:
    """statecore's installed version (read once per process)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("statecore")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def terminate_as_exit() -> Callable[[], None]:
    """Make SIGTERM raise SystemExit while a run is driven, so it ends the way Ctrl-C
    does (outcomes logged, open attempts interrupted); only in the main thread, and only
    when SIGTERM has its default handler. Returns the function that puts it back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return lambda: None

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)

    def restore() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return restore


class DriverSession:
    """One process's tenure on one run: the lease, kept renewed, and its session notes."""

    def __init__(self, store: Store, run_id: str, options: RunOptions) -> None:
        self.store = store
        self.run_id = run_id
        self.options = options
        self.lease: Lease | None = None
        self.keeper: LeaseKeeper | None = None
        #: the owner this session took the run over from (a dead process of this host)
        self.took_over_from: str | None = None
        #: the owner of the session while it is open in the log
        self.owner: str | None = None

    def acquire(self) -> Lease | None:
        """Take the run's lease; return the lease record it replaced, if any.

        Raises:
            LeaseHeld: a live process holds it.
        """
        ttl = self.options.lease_ttl
        store, run_id = self.store, self.run_id
        previous = store.get_lease(run_id)
        now = now_ns()
        try:
            lease = store.acquire_lease(run_id, owner=new_owner(), ttl=ttl, now=now)
        except LeaseHeld:
            held = store.get_lease(run_id)
            if held is None:  # released between the two reads: ask once more
                lease = store.acquire_lease(run_id, owner=new_owner(), ttl=ttl, now=now_ns())
            elif not holder_is_dead(held.owner):
                # name the live holder read now (the refusal may name one that was
                # taken over from since)
                raise LeaseHeld(
                    f"run {run_id!r} is being driven by {held.owner} (lease epoch {held.epoch})"
                ) from None
            else:
                # The holder ran on this host and its process is gone: its lease can
                # only lapse, so take the run over now instead of waiting for the expiry,
                # by acquiring "after" it. The new lease keeps that later expiry (the
                # keeper never renews it down): every racer that read the same dead lease
                # asks "after" the same instant and finds this one still held.
                lease = store.acquire_lease(
                    run_id, owner=new_owner(), ttl=ttl, now=max(now, held.expires + 1)
                )
                self.took_over_from = held.owner
                previous = held
        self.lease = lease
        self.keeper = LeaseKeeper(store, lease, ttl, self.options.lease_renew)
        return previous

    def current(self) -> Lease:
        """The lease as last renewed.

        Raises:
            LeaseLost: the keeper could not renew it: another process has the run.
        """
        keeper = self.keeper
        assert keeper is not None and self.lease is not None
        if keeper.lost is not None:
            raise LeaseLost(
                f"run {self.run_id!r}: this driver lost its lease ({keeper.lost}); "
                "another process has taken the run over"
            )
        self.lease = keeper.lease
        return keeper.lease

    def check_start(self) -> None:
        """Return once a body may start (the lease is valid now); see
        :meth:`LeaseKeeper.check_start`.

        Raises:
            LeaseLost: another process has the run.
        """
        keeper = self.keeper
        if keeper is None:
            raise LeaseLost(f"run {self.run_id!r}: this driver holds no lease")
        if keeper.lost is None and time.time_ns() < keeper.start_by:
            return  # the common case, checked here: this runs before every body
        keeper.check_start()

    def release(self) -> None:
        keeper, self.keeper = self.keeper, None
        if keeper is None:
            return
        keeper.stop()
        with contextlib.suppress(StatecoreError):
            self.store.release_lease(keeper.lease)

    # -- the notes --------------------------------------------------------------------------

    def lost(self, view: RunView, previous: Lease | None) -> LostSession | None:
        """The last driver session, if it never ended (a crash), with when it was last
        known alive: its last event, or its lease's last renewal if later."""
        last = open_session(view)
        if last is None:
            if not any(isinstance(r.state, Running | Looped) for _, _, r in entity_runs(view)):
                return None
            owner, ttl = "an earlier driver", None  # a log from before sessions were logged
        else:
            owner, ttl = last
        alive = view.last_event.ts if view.last_event is not None else 0
        if previous is not None and previous.owner == owner and ttl is not None:
            alive = max(alive, min(previous.expires - int(float(ttl) * 1e9), now_ns()))
        return LostSession(owner, alive)

    def open(self, record: Recorder, why: str, lost: LostSession | None) -> None:
        """Log who drives the run from now on, and why (``run``, ``resume``, ``takeover``)."""
        lease = self.lease
        assert lease is not None
        if lost is not None:
            record.note(
                "session-lost",
                f"the driver {lost.owner} stopped without ending its session; last known "
                f"alive at {iso_ns(lost.last_alive)}",
                {"owner": lost.owner, "last_alive": lost.last_alive},
            )
        self.owner = lease.owner
        record.note(
            "session-start",
            f"driven by {lease.owner} ({why}), lease epoch {lease.epoch}",
            {
                "owner": lease.owner,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "epoch": lease.epoch,
                "version": version(),
                "why": why,
                "lease_ttl": self.options.lease_ttl,
            },
        )
        if why == "takeover":
            record.note(
                "takeover",
                f"took the run over from {self.took_over_from}, a process of "
                "this host that is gone",
                {"previous_owner": self.took_over_from},
            )

    def close(self, record: Recorder, ending: str) -> None:
        if self.owner is None:
            return
        owner, self.owner = self.owner, None
        record.flush_logs()
        record.note(
            "session-end",
            f"{owner} ended its session: {ending}",
            {"owner": owner, "reason": ending},
        )
