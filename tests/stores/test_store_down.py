"""A store that goes down mid-run: bounded retries, StoreUnavailable, nothing lost, resume.

Redis: a private ``redis-server`` (AOF, ``appendfsync always``, in a temporary directory)
is SIGKILLed while a mapped child is blocked in its body; ``flow.run`` raises
``StoreUnavailable`` naming the server; the server is restarted on the same port and
data directory; everything committed before the outage is still there, and ``resume``
finishes the run without re-running what had succeeded.

SQLite: another connection holds the write lock (``BEGIN EXCLUSIVE``) for longer than the
store's ``busy_timeout``; ``flow.run`` raises ``StoreUnavailable`` naming the file and the
lock; after the lock is released, ``resume`` finishes the run. (The tests run as root
here, so a ``chmod`` of the file or directory would not stop SQLite; the lock does.)
"""

from __future__ import annotations

import itertools
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from statecore import Flow, task
from statecore.backends import SQLiteStore, Store, open_store
from statecore.errors import StoreUnavailable
from statecore.events import StoredEvent, chain_hash
from statecore.fold import fold
from statecore.runners import LocalRunner, replay, resume
from statecore.states import Mapped, Running, Success

from ..conftest import service_missing

RUNNER = {"lease_ttl": 1.0, "lease_renew": 0.3, "group_events": 8, "max_workers": 4}


class _Outage:
    """Shared by the flow's bodies: call counts, and the child that blocks."""

    def __init__(self) -> None:
        self.calls: Counter[int] = Counter()
        self.blocked = threading.Event()
        self.proceed = threading.Event()
        self.lock = threading.Lock()


OUTAGE = _Outage()


@task
def numbers() -> list[int]:
    return [1, 2, 3, 4]


@task
def tenfold(x: int) -> int:
    with OUTAGE.lock:
        OUTAGE.calls[x] += 1
        first = OUTAGE.calls[x] == 1
    if x == 3 and first:
        OUTAGE.blocked.set()
        assert OUTAGE.proceed.wait(60)
    return x * 10


@task
def add(xs: list[int]) -> int:
    return sum(xs)


with Flow("store-down") as outage_flow:
    TENFOLD = tenfold.map(numbers())
    TOTAL = add(TENFOLD)


@pytest.fixture(autouse=True)
def fresh_outage() -> Iterator[None]:
    global OUTAGE
    OUTAGE = _Outage()
    yield
    OUTAGE.proceed.set()


def wait_until(predicate: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def assert_chain(events: list[StoredEvent]) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    for previous, event in itertools.pairwise(events):
        assert event.prev_hash == chain_hash(previous), event.seq


def start_in_thread(store: Store, run_id: str) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def drive() -> None:
        try:
            outcome["state"] = outage_flow.run(
                store=store, run_id=run_id, runner=LocalRunner(**RUNNER)
            )
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=drive, name="driver", daemon=True)
    thread.start()
    return thread, outcome


def others_committed(store: Store, run_id: str) -> bool:
    """True once the log has children 0, 1 and 3 Success and child 2 Running."""
    events = store.read(run_id)
    if not events:
        return False
    view = fold(events, run_id=run_id)
    children = view.children.get(view.by_key["tenfold-1"], [])
    if len(children) != 4:
        return False
    return [type(c.state) for c in children] == [Success, Success, Running, Success]


def outage_then_resume(
    store: Store,
    run_id: str,
    take_down: Callable[[], None],
    bring_back: Callable[[], None],
    *,
    may_land_late: bool = False,
) -> StoreUnavailable:
    """Drive a run until child 2 blocks with the rest committed, take the store down,
    let the child finish, expect StoreUnavailable; bring the store back and resume.

    With ``may_land_late``, the blocked child's outcome may have reached the log after
    all (a server that was only slow executes the append the client gave up on); then
    resume must not run it again.
    """
    thread, outcome = start_in_thread(store, run_id)
    assert OUTAGE.blocked.wait(30)
    wait_until(lambda: others_committed(store, run_id), "the other children to be committed")
    committed = store.read(run_id)

    take_down()
    OUTAGE.proceed.set()
    thread.join(60)
    assert not thread.is_alive(), "flow.run did not give up on a store that is down"
    error = outcome.get("error")
    assert isinstance(error, StoreUnavailable), repr(error)
    assert "state" not in outcome

    bring_back()
    events = store.read(run_id)
    assert events[: len(committed)] == committed, "committed events were lost"
    # the failed driver could not release its lease; it lapses (1 s), then resume gets in
    lease = store.get_lease(run_id)
    if lease is not None:
        wait_until(lambda: time.time_ns() > lease.expires, "the old lease to lapse")
    state = resume(run_id, outage_flow, store=store, runner=LocalRunner(**RUNNER))
    assert state.is_successful()
    assert state.result[TOTAL].result == 100
    mapped = state.result[TENFOLD]
    assert isinstance(mapped, Mapped)
    assert [c.result for c in mapped.map_states] == [10, 20, 30, 40]
    # children whose success was committed never ran again; the blocked one did
    landed = may_land_late and OUTAGE.calls[3] == 1
    assert OUTAGE.calls == Counter({1: 1, 2: 1, 4: 1, 3: 1 if landed else 2})

    final = store.read(run_id)
    assert final[: len(committed)] == committed
    assert_chain(final)
    view = replay(store, run_id)
    assert view.problems == []
    assert (view.flow_state.name, view.flow_state.message) == (state.name, state.message)
    assert view.task_states["add-1"].result == 100
    interrupted = [
        e
        for e in view.timeline()
        if e.task == "tenfold-1" and e.index == 2 and (e.message or "").startswith("Interrupted")
    ]
    assert len(interrupted) == (0 if landed else 1)
    return error


# -- Redis ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of our own, with an fsync-always AOF in ``directory`` (or, with
    ``aof=False``, no persistence at all: a restart loses everything)."""

    def __init__(self, directory: Path, *, aof: bool = True) -> None:
        self.directory = directory
        self.aof = aof
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "yes" if self.aof else "no"),
                *("--appendfsync", "always", "--enable-debug-command", "local"),
                *("--dir", str(self.directory), "--daemonize", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)

        def up() -> bool:
            try:
                return bool(client.ping())
            except (redis.ConnectionError, redis.BusyLoadingError):
                return False

        try:
            wait_until(up, "the private redis-server")
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        service_missing("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


def test_redis_down_mid_run_then_back(private_redis: PrivateRedis) -> None:
    from statecore.backends.redis import RedisStore

    store = RedisStore(private_redis.url, retries=3, backoff=0.02)
    try:
        error = outage_then_resume(store, "outage", private_redis.kill, private_redis.start)
    finally:
        store.close()
    assert f"127.0.0.1:{private_redis.port}" in str(error)
    assert "unavailable" in str(error)


def test_redis_that_is_not_there_is_unavailable_at_once() -> None:
    from statecore.backends.redis import RedisStore

    port = free_port()
    store = RedisStore(f"redis://127.0.0.1:{port}/0", retries=2, backoff=0.01)
    try:
        with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{port}"):
            outage_flow.run(store=store, run_id="nowhere", runner=LocalRunner(**RUNNER))
    finally:
        store.close()
    assert OUTAGE.calls == Counter()


# -- SQLite -----------------------------------------------------------------------------------


def test_sqlite_locked_beyond_busy_timeout_then_released(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path, busy_timeout=0.2)
    blocker = sqlite3.connect(path, isolation_level=None, timeout=5)

    def lock() -> None:
        blocker.execute("BEGIN EXCLUSIVE")

    def unlock() -> None:
        blocker.execute("ROLLBACK")

    try:
        error = outage_then_resume(store, "locked", lock, unlock)
    finally:
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")
        blocker.close()
        store.close()
    message = str(error)
    assert str(path) in message
    assert "locked" in message


def test_sqlite_file_that_cannot_be_created_is_unavailable(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(StoreUnavailable, match="cannot create the database file"):
        open_store(f"sqlite:///{not_a_dir}/runs.db")
    with pytest.raises(StoreUnavailable, match=str(not_a_dir)):
        outage_flow.run(store=f"sqlite:///{not_a_dir}/runs.db", runner=LocalRunner(**RUNNER))
    assert OUTAGE.calls == Counter()
    assert not_a_dir.read_text() == "x"
