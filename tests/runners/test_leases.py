"""Leases: one live driver per run, takeover when it dies, fencing of a stale one.

* A second ``resume`` (or ``flow.run(run_id=R)``) of a run that a live subprocess drives
  fails with ``LeaseHeld`` naming the holder and changes nothing; the holder keeps
  renewing; once it is SIGKILLed, a resume on this host takes over at once (its lease
  still had seconds to run).
* A holder on another host (a lease taken in-process as ``otherhost:1:x``) blocks resumes
  until its lease expires; then a resume succeeds.
* A stale holder (``lease_renew`` longer than ``lease_ttl``, so it never renews) is fenced:
  after another driver takes the run over, its next append raises ``LeaseLost`` out of
  ``flow.run``, and the log holds no event of its epoch after the takeover.
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from statecore import Flow, task, triggers
from statecore.backends import SQLiteStore, Store
from statecore.errors import LeaseHeld, LeaseLost, StatecoreError
from statecore.events import StoredEvent, chain_hash
from statecore.runners import LocalRunner, replay, resume
from statecore.states import Paused

from ..conftest import unique_prefix
from ..crash_flows import flows
from ..crash_flows.flows import GATE_ENV, gated_flow, read_lines
from .test_crash_resume import REPO, spawn, subprocess_env

FAST = {"lease_ttl": 1.0, "lease_renew": 0.3}


def wait_until(predicate: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Poll ``predicate``; the limit only stops a broken test from hanging."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def wait_for_expiry(store: Store, run_id: str) -> None:
    lease = store.get_lease(run_id)
    assert lease is not None
    wait_until(lambda: time.time_ns() > lease.expires, "the lease to expire")


def assert_chain(events: list[StoredEvent]) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    for previous, event in itertools.pairwise(events):
        assert event.prev_hash == chain_hash(previous), event.seq


@pytest.fixture(params=["sqlite", "redis"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, str]]:
    """A store another process can open too, with its URL."""
    if request.param == "sqlite":
        path = tmp_path / "runs.db"
        s: Store = SQLiteStore(path)
        url = f"sqlite:///{path}"
    else:
        redis_url = request.getfixturevalue("redis_url")
        cleanup = request.getfixturevalue("redis_cleanup")
        from statecore.backends.redis import RedisStore

        prefix = unique_prefix()
        cleanup(prefix)
        url = f"{redis_url}{'&' if '?' in redis_url else '?'}prefix={prefix}"
        s = RedisStore(url)
    try:
        yield s, url
    finally:
        s.close()


# -- a live holder in another process -------------------------------------------------------


def test_live_holder_refuses_a_second_driver_then_dies_and_is_taken_over_at_once(
    shared_store: tuple[Store, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, url = shared_store
    run_id = "live-run"
    side, gate = tmp_path / "side", tmp_path / "gate"
    # The holder commits every event at once (group of 1) and renews every 0.3 s a lease
    # of 5 s; its first body waits for a gate that stays shut while it lives.
    proc = spawn(
        url,
        run_id,
        side,
        *("--flow", "gated", "--group-events", "1", "--lease-ttl", "5", "--lease-renew", "0.3"),
        env={GATE_ENV: str(gate)},
    )
    try:
        wait_until(lambda: len(read_lines(side)) == 1 and store.head(run_id) >= 3, "the holder")
        holder = store.get_lease(run_id)
        assert holder is not None
        assert holder.owner.startswith(f"{socket.gethostname()}:{proc.pid}:")
        before = store.read(run_id)

        monkeypatch.setenv(flows.SIDE_ENV, str(side))
        monkeypatch.setenv(GATE_ENV, str(gate))
        with pytest.raises(LeaseHeld) as refused:
            resume(run_id, gated_flow, store=store, runner=LocalRunner(**FAST))
        assert holder.owner in str(refused.value)
        with pytest.raises(LeaseHeld, match=holder.owner):
            gated_flow.run(store=store, run_id=run_id, runner=LocalRunner(**FAST))
        # nothing changed: no event, no lease move, no body ran here
        assert store.read(run_id) == before
        assert len(read_lines(side)) == 1
        current = store.get_lease(run_id)
        assert current is not None and (current.owner, current.epoch) == (
            holder.owner,
            holder.epoch,
        )

        # the holder keeps its lease alive: it renews, and is still refused to others
        wait_until(
            lambda: (
                (lease := store.get_lease(run_id)) is not None and lease.expires > holder.expires
            ),
            "a renewal",
        )
        with pytest.raises(LeaseHeld):
            resume(run_id, gated_flow, store=store, runner=LocalRunner(**FAST))
        assert store.read(run_id) == before
    finally:
        proc.kill()
        proc.communicate(timeout=30)  # reaped: a zombie would still look alive

    left = store.get_lease(run_id)
    assert left is not None and left.owner == holder.owner
    gate.touch()
    still_live = left.expires > time.time_ns()
    state = resume(run_id, gated_flow, store=store, runner=LocalRunner(**FAST))
    assert state.is_successful()
    view = replay(store, run_id)
    if still_live:
        # the lease had time left: only the same-host dead-holder rule let us in
        takeovers = [n for _, n in view.notes if n.code == "takeover"]
        assert len(takeovers) == 1 and holder.owner in takeovers[0].message
    events = store.read(run_id)
    assert events[: len(before)] == before
    assert_chain(events)
    new_epoch = {e.epoch for e in events[len(before) :]}
    assert len(new_epoch) == 1 and new_epoch.pop() > holder.epoch
    # the interrupted first task ran again with the same attempt number
    lines = read_lines(side)
    assert [(k, a) for k, _, a, _ in lines][:2] == [("gated_first-1", 1), ("gated_first-1", 1)]


def test_cli_resume_of_a_live_run_exits_4(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    side, gate = tmp_path / "side", tmp_path / "gate"
    proc = spawn(
        f"sqlite:///{path}",
        "cli-live",
        side,
        *("--flow", "gated", "--group-events", "1", "--lease-ttl", "30"),
        env={GATE_ENV: str(gate)},
    )
    try:
        wait_until(lambda: store.head("cli-live") >= 3, "the holder")
        before = store.read("cli-live")
        holder = store.get_lease("cli-live")
        assert holder is not None
        cli = subprocess.run(
            [
                "statecore",
                "resume",
                "cli-live",
                "--flow",
                "tests/crash_flows/flows.py:gated_flow",
                "--store",
                f"sqlite:///{path}",
            ],
            cwd=REPO,
            env=subprocess_env(side, {GATE_ENV: str(gate)}),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 4, cli.stderr + cli.stdout
        assert holder.owner in cli.stderr + cli.stdout
        assert store.read("cli-live") == before
    finally:
        proc.kill()
        proc.communicate(timeout=30)
        store.close()


# -- a holder on another host -----------------------------------------------------------------


@task
def prepare() -> int:
    return 1


@task(trigger=triggers.manual_only)
def gate_task(x: int) -> int:
    return x + 1


with Flow("lease-gate") as gate_flow:
    GATED = gate_task(prepare())


def test_holder_on_another_host_blocks_until_its_lease_expires(store: Store) -> None:
    state = gate_flow.run(store=store, run_id="remote", runner=LocalRunner(**FAST))
    assert not state.is_finished()
    assert isinstance(state.result[GATED], Paused)
    head = store.head("remote")
    remote = store.acquire_lease("remote", owner="otherhost:1:x", ttl=1.0, now=time.time_ns())

    with pytest.raises(LeaseHeld, match="otherhost:1:x"):
        resume("remote", gate_flow, store=store, approve=[GATED], runner=LocalRunner(**FAST))
    assert store.head("remote") == head
    current = store.get_lease("remote")
    assert current is not None and (current.owner, current.epoch) == ("otherhost:1:x", remote.epoch)

    wait_for_expiry(store, "remote")
    state = resume("remote", gate_flow, store=store, approve=[GATED], runner=LocalRunner(**FAST))
    assert state.is_successful()
    assert state.result[GATED].result == 2
    view = replay(store, "remote")
    # another host's process cannot be checked: no takeover note, the lease simply lapsed
    assert [n.code for _, n in view.notes if n.code == "takeover"] == []
    new = store.read("remote", after=head)
    assert new and all(e.epoch > remote.epoch for e in new)
    assert_chain(store.read("remote"))


# -- a stale holder is fenced -------------------------------------------------------------------


class _Hold:
    """The first call blocks until released; later calls return at once."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self) -> str:
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        if first:
            self.entered.set()
            assert self.release.wait(60)
        return "held"


HOLD = _Hold()


@task
def hold() -> str:
    return HOLD()


@task
def after_hold(x: str) -> str:
    return x + "!"


with Flow("lease-fence") as fence_flow:
    AFTER = after_hold(hold())


@pytest.fixture
def stale_driver(
    store: Store,
) -> Iterator[tuple[Store, dict[str, Any]]]:
    """A driver of run ``fenced`` in a thread, blocked in its first body, that never renews
    its 1 s lease and commits every event at once; ``outcome`` gets what flow.run did."""
    global HOLD
    HOLD = _Hold()
    outcome: dict[str, Any] = {}

    def drive() -> None:
        runner = LocalRunner(lease_ttl=1.0, lease_renew=10.0, group_events=1)
        try:
            outcome["state"] = fence_flow.run(store=store, run_id="fenced", runner=runner)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=drive, name="stale-driver", daemon=True)
    thread.start()
    assert HOLD.entered.wait(30)
    wait_until(lambda: store.head("fenced") >= 3, "the stale driver's first events")
    lease = store.get_lease("fenced")
    assert lease is not None
    outcome["lease"] = lease
    outcome["thread"] = thread
    try:
        yield store, outcome
    finally:
        HOLD.release.set()
        thread.join(30)


def finish_stale(outcome: dict[str, Any]) -> BaseException | None:
    HOLD.release.set()
    outcome["thread"].join(30)
    assert not outcome["thread"].is_alive()
    return outcome.get("error")


def test_stale_holder_is_fenced_by_a_bare_takeover(
    stale_driver: tuple[Store, dict[str, Any]],
) -> None:
    """Another host takes the lease after expiry and has not written yet: the stale
    driver's next append is refused for its epoch alone."""
    store, outcome = stale_driver
    stale = outcome["lease"]
    wait_for_expiry(store, "fenced")
    taken = store.acquire_lease("fenced", owner="otherhost:2:y", ttl=60, now=time.time_ns())
    assert taken.epoch > stale.epoch
    before = store.read("fenced")

    error = finish_stale(outcome)
    assert isinstance(error, LeaseLost), repr(error)
    assert "state" not in outcome
    assert store.read("fenced") == before
    # the stale driver released nothing that was not its own
    current = store.get_lease("fenced")
    assert current is not None and (current.owner, current.epoch) == (taken.owner, taken.epoch)


def take_over_and_release_stale(
    stale_driver: tuple[Store, dict[str, Any]],
) -> BaseException | None:
    """A resume takes the run over after expiry and finishes it, then the stale driver's
    body returns; returns what the stale ``flow.run`` raised, after checking the log."""
    store, outcome = stale_driver
    stale = outcome["lease"]
    wait_for_expiry(store, "fenced")
    state = resume("fenced", fence_flow, store=store, runner=LocalRunner(**FAST))
    assert state.is_successful()
    assert state.result[AFTER].result == "held!"
    after_takeover = store.read("fenced")

    error = finish_stale(outcome)
    assert "state" not in outcome, "the stale driver finished as if nothing happened"
    assert isinstance(error, StatecoreError), repr(error)
    # nothing of the stale epoch after the takeover, nothing at all after the resume
    assert store.read("fenced") == after_takeover
    takeover_at = min(e.seq for e in after_takeover if e.epoch != stale.epoch)
    assert all(e.epoch > stale.epoch for e in after_takeover[takeover_at - 1 :])
    assert_chain(after_takeover)
    view = replay(store, "fenced")
    assert (view.flow_state.name, view.flow_state.message) == (state.name, state.message)
    assert view.task_states["after_hold"].result == "held!"
    return error


def test_stale_holder_is_refused_after_a_resume_took_the_run_over(
    stale_driver: tuple[Store, dict[str, Any]],
) -> None:
    take_over_and_release_stale(stale_driver)


def test_stale_holder_gets_lease_lost_after_a_resume_took_the_run_over(
    stale_driver: tuple[Store, dict[str, Any]],
) -> None:
    error = take_over_and_release_stale(stale_driver)
    assert isinstance(error, LeaseLost), (
        f"the stale driver's append failed with {type(error).__name__}: {error}"
    )


# -- taking over a dead holder's lease, racing ----------------------------------------------


def dead_owner() -> str:
    """The owner string of a process of this host that has exited."""
    probe = subprocess.Popen(["true"])
    probe.wait()
    return f"{socket.gethostname()}:{probe.pid}:deadbeef"


def test_a_takeover_holds_against_racers_that_read_the_dead_lease(
    shared_store: tuple[Store, str],
) -> None:
    """Two resumers read the same dead holder's lease (30 s left): the first takes the
    run over; the second, acting on that stale read, asks "after" the dead lease's
    expiry too, and must be refused, before and after the winner's keeper renews."""
    from statecore.runners.execution import RunOptions
    from statecore.runners.session import DriverSession

    store, _ = shared_store
    run_id = "takeover-race"
    dead = store.acquire_lease(run_id, owner=dead_owner(), ttl=30.0, now=time.time_ns())
    winner = DriverSession(store, run_id, RunOptions(lease_ttl=15.0, lease_renew=0.05))
    try:
        winner.acquire()
        assert winner.took_over_from == dead.owner
        assert winner.lease is not None and winner.lease.epoch == dead.epoch + 1
        for renewals in range(3):
            with pytest.raises(LeaseHeld, match=winner.lease.owner):
                store.acquire_lease(run_id, owner="racer:1:x", ttl=15.0, now=dead.expires + 1)
            keeper = winner.keeper
            assert keeper is not None
            before = keeper.lease
            wait_until(lambda k=keeper, b=before: k.lease is not b, f"renewal {renewals + 1}")
            assert keeper.lease.expires >= before.expires  # never renewed down
        winner.check_start()  # the winner may start bodies all along
        # a resumer that reads the lease now is refused naming the live winner
        loser = DriverSession(store, run_id, RunOptions())
        with pytest.raises(LeaseHeld, match=winner.lease.owner):
            loser.acquire()
    finally:
        winner.release()


def test_no_body_starts_once_the_lease_is_lost(store: Store) -> None:
    from statecore.runners.execution import RunOptions
    from statecore.runners.session import DriverSession

    run_id = "gate"
    session = DriverSession(store, run_id, RunOptions(lease_ttl=0.3, lease_renew=0.05))
    session.acquire()
    try:
        session.check_start()
        keeper = session.keeper
        assert keeper is not None
        # another driver takes the run over once the lease lapses (renewals stopped)
        keeper.stop()
        wait_for_expiry(store, run_id)
        store.acquire_lease(run_id, owner="other:1:x", ttl=30.0, now=time.time_ns())
        with pytest.raises(LeaseLost):
            session.check_start()
    finally:
        session.release()
