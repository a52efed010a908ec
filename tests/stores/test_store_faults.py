"""Store faults, each tried for real: a clear error naming it, nothing committed lost, resume.

SQLite: disk full (a tmpfs of a few MB), the file made immutable (``chattr +i``) or its
directory moved away mid-run, another *process* holding ``BEGIN EXCLUSIVE`` beyond the
busy timeout, the last page overwritten, the WAL truncated while closed. Readers (``show``,
``export``, ``verify``) on a read-only mount and under another process's write lock.
Redis: a private server SIGKILLed and restarted without persistence, ``CLIENT KILL`` of the
store's connections, ``DEBUG SLEEP`` beyond the socket timeout.

Making a file read-only for root: file modes do not stop root, so these tests use a
read-only bind mount (``mount --bind D D; mount -o remount,bind,ro D``) or ``chattr +i``,
which stop root too; as another user, ``chmod`` is enough. The mid-run outages reuse the
harness of :mod:`tests.stores.test_store_down` (a mapped child blocks while the others are
committed; the store goes down; the child finishes; the run must fail with a clear error,
keep every committed event, and resume without re-running what succeeded).
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from statecore.backends import SQLiteStore, Store
from statecore.backends.sqlite import SCHEMA_VERSION
from statecore.cli.main import cli
from statecore.errors import CorruptEvent, RunNotFound, StoreUnavailable
from statecore.runners import LocalRunner, replay, resume
from statecore.testing.stores import sample_events

from . import test_store_down as down
from .test_store_down import PrivateRedis, outage_then_resume, wait_until
from .test_store_sqlite import as_version_2

RUNNER = down.RUNNER
IS_ROOT = os.geteuid() == 0


@pytest.fixture(autouse=True)
def fresh_outage() -> Iterator[None]:
    down.OUTAGE = down._Outage()
    yield
    down.OUTAGE.proceed.set()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        down.service_missing("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _privileged(reason: str) -> None:
    """Skip a test that needs what only root can do here (mount, chattr)."""
    if not IS_ROOT:
        pytest.skip(f"needs root: {reason}")


@contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Make ``directory`` and what is in it read-only, even for root, for the block.

    As root: a read-only bind mount of the directory on itself. Otherwise: chmod.
    """
    if not IS_ROOT:
        modes = {p: p.stat().st_mode for p in [directory, *directory.iterdir()]}
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    if _run("mount", "--bind", str(directory), str(directory)).returncode:
        pytest.skip("mount --bind is not permitted here")
    try:
        done = _run("mount", "-o", "remount,bind,ro", str(directory))
        assert done.returncode == 0, done.stderr
        yield
    finally:
        assert _run("umount", str(directory)).returncode == 0


def finished_run(path: Path, run_id: str = "done") -> None:
    """A finished run of the outage flow in the SQLite file at ``path``."""
    down.OUTAGE.proceed.set()  # child 3 does not wait
    with SQLiteStore(path) as store:
        state = down.outage_flow.run(store=store, run_id=run_id, runner=LocalRunner(**RUNNER))
    assert state.is_successful()
    down.OUTAGE = down._Outage()


def invoke(path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [*args, "--store", f"sqlite:///{path}"])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result.exit_code, result.output


# -- readers open read-only and never wait on writers ----------------------------------------


def test_readers_work_on_a_read_only_mount(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    path = directory / "runs.db"
    finished_run(path)
    with read_only(directory):
        for command in ("show", "export", "verify"):
            code, output = invoke(path, command, "done")
            assert code == 0, (command, output)
        assert "intact" in invoke(path, "verify", "done")[1]
        store = SQLiteStore(path)
        try:
            assert store.read_only
            assert replay(store, "done").flow_state.is_successful()
            with pytest.raises(StoreUnavailable, match="read-only"):
                store.request_cancel("done", now=time.time_ns())
            with pytest.raises(StoreUnavailable, match="read-only"):
                store.acquire_lease("done", owner="me", ttl=5, now=time.time_ns())
        finally:
            store.close()
    # nothing was written through the read-only store
    with SQLiteStore(path) as store:
        assert not store.cancel_requested("done", now=time.time_ns())


def test_a_version_2_file_opened_read_only_still_reads_its_legacy_cancels(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ro" / "runs.db"
    SQLiteStore(path).close()
    now = time.time_ns()
    as_version_2(path, {"live": now + 10**12})
    with read_only(path.parent):
        store = SQLiteStore(path)
        try:
            assert store.read_only
            assert store.cancel_requested("live", now=now)
            assert not store.cancel_requested("live", now=now + 10**12)
            assert not store.cancel_requested("other", now=now)
        finally:
            store.close()
    with SQLiteStore(path) as store:  # writable again: migrated on open
        assert store.inspect()["schema_version"] == SCHEMA_VERSION
        assert store.cancel_requested("live", now=now)


_LOCKER = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    sys.stdin.readline()
    conn.execute("ROLLBACK")
    """
)


@contextmanager
def locked_by_another_process(path: Path) -> Iterator[None]:
    locker = subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        yield
    finally:
        if locker.stdin is not None:
            locker.stdin.close()
        locker.wait(30)


def test_readers_do_not_wait_on_another_process_holding_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    finished_run(path)
    with locked_by_another_process(path):
        # A busy timeout of 0: any wait for the lock would fail at once, not after 5 s.
        store = SQLiteStore(path, busy_timeout=0)
        try:
            assert not store.read_only
            assert replay(store, "done").flow_state.is_successful()
            assert store.get_lease("done") is not None
            with pytest.raises(StoreUnavailable, match=r"locked by another connection"):
                store.request_cancel("done", now=time.time_ns())
        finally:
            store.close()
        for command in ("show", "export", "verify"):
            code, output = invoke(path, command, "done")
            assert code == 0, (command, output)


def test_a_run_blocked_by_another_process_s_lock_fails_clearly_and_resumes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path, busy_timeout=0.2)
    state: dict[str, subprocess.Popen[str]] = {}

    def lock() -> None:
        locker = subprocess.Popen(
            [sys.executable, "-c", _LOCKER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        state["locker"] = locker

    def unlock() -> None:
        locker = state.pop("locker")
        assert locker.stdin is not None
        locker.stdin.close()
        locker.wait(30)

    try:
        error = outage_then_resume(store, "locked", lock, unlock)
    finally:
        if "locker" in state:
            unlock()
        store.close()
    assert str(path) in str(error)
    assert "locked by another connection for longer than its busy_timeout" in str(error)


# -- SQLite faults mid-run -------------------------------------------------------------------


def test_disk_full_mid_run_then_space_freed(tmp_path: Path) -> None:
    _privileged("a small tmpfs")
    mount = tmp_path / "small"
    mount.mkdir()
    if _run("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    filler = mount / "filler"
    try:
        store = SQLiteStore(mount / "runs.db", busy_timeout=0.2)

        def fill() -> None:
            with open(filler, "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass

        try:
            error = outage_then_resume(store, "full", fill, filler.unlink)
        finally:
            store.close()
        assert "is full: the disk" in str(error)
        assert str(mount / "runs.db") in str(error)
    finally:
        _run("umount", "-l", str(mount))


def _chattr(flag: str, *paths: Path) -> None:
    for path in paths:
        if path.exists():
            done = _run("chattr", flag, str(path))
            if done.returncode:
                pytest.skip(f"chattr is not permitted here: {done.stderr}")


def test_file_made_immutable_mid_run_then_writable_again(tmp_path: Path) -> None:
    _privileged("chattr +i")
    path = tmp_path / "runs.db"
    store = SQLiteStore(path, busy_timeout=0.2)
    files = [path, Path(f"{path}-wal"), Path(f"{path}-shm"), tmp_path]
    try:
        error = outage_then_resume(
            store,
            "immutable",
            lambda: _chattr("+i", *files),
            lambda: _chattr("-i", *files),
        )
    finally:
        _run("chattr", "-i", *map(str, files))
        store.close()
    assert str(path) in str(error)
    assert "read-only now" in str(error)


def test_directory_moved_away_mid_run_then_put_back(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    path = directory / "runs.db"
    store = SQLiteStore(path, busy_timeout=0.2)
    away = tmp_path / "away"
    try:
        error = outage_then_resume(
            store,
            "moved",
            lambda: directory.rename(away),
            lambda: away.rename(directory),
        )
    finally:
        store.close()
    assert "removed, moved or replaced while open" in str(error)


def test_directory_removed_mid_run_is_refused_not_written_to_a_ghost(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    path = directory / "runs.db"
    with SQLiteStore(path) as store:
        store.append("r", sample_events("r", 1, 2), expected_seq=0)
        shutil.rmtree(directory)
        # SQLite would keep committing to the deleted file; statecore refuses
        with pytest.raises(StoreUnavailable, match="removed, moved or replaced"):
            store.append("r", sample_events("r", 3, 1), expected_seq=2)


def test_last_page_overwritten_is_a_damaged_store(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    finished_run(path)
    with SQLiteStore(path) as store:
        before = store.read("done")
    size = path.stat().st_size
    with sqlite3.connect(path) as raw:
        page = int(raw.execute("PRAGMA page_size").fetchone()[0])
    with open(path, "r+b") as f:
        f.seek(size - page)
        f.write(bytes([0xA5]) * page)
    # Every call either gives the truth or says the store is damaged; none escapes as a
    # foreign exception, and the damage is exit 2 in the CLI, not 4.
    outcomes: list[str] = []
    try:
        store = SQLiteStore(path)
    except CorruptEvent as exc:
        assert "is damaged" in str(exc)
        outcomes.append("open refused")
    else:
        with store:
            calls: list[Callable[[Store], object]] = [
                lambda s: s.read("done"),
                lambda s: s.list_runs(),
                lambda s: s.get_run("done"),
                lambda s: s.get_lease("done"),
                lambda s: s.cache_get("x", now=0),
                lambda s: s.cancel_requested("done", now=0),
                lambda s: s.acquire_lease("new", owner="a", ttl=1, now=0),
                lambda s: s.append("new", sample_events("new", 1, 50), expected_seq=0),
            ]
            for call in calls:
                try:
                    got = call(store)
                except CorruptEvent as exc:
                    assert "is damaged" in str(exc)
                    outcomes.append("damaged")
                else:
                    outcomes.append("ok")
                    if call is calls[0]:
                        assert got == before
    assert "damaged" in outcomes or "open refused" in outcomes, outcomes
    for command in ("show", "verify", "export"):
        code, output = invoke(path, command, "done")
        assert code in (0, 2), (command, code, output)


_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from statecore.backends import SQLiteStore
    from statecore.testing.stores import sample_events
    store = SQLiteStore(sys.argv[1])
    store.append("w", sample_events("w", 1, 1), expected_seq=0)
    conn = store._connection()
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # keep every commit in the WAL
    for seq in range(2, 41):
        store.append("w", sample_events("w", seq, 1), expected_seq=seq - 1)
    os.kill(os.getpid(), signal.SIGKILL)  # no clean close: the WAL stays
    """
)


def test_wal_truncated_while_closed_leaves_a_sound_prefix_that_resumes(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    done = subprocess.run([sys.executable, "-c", _WRITER, str(path)], check=False)
    assert done.returncode == -signal.SIGKILL
    wal = Path(f"{path}-wal")
    full = wal.stat().st_size
    assert full > 0
    with open(wal, "r+b") as f:  # cut the WAL in the middle of a frame
        f.truncate(full // 2 + 7)
    with SQLiteStore(path) as store:
        events = store.read("w")
        # What SQLite keeps is a prefix of what was committed, without gaps or changes:
        # the commits in the cut part are gone (see the notes: a cut WAL cannot be told
        # from a crash before those commits).
        assert 1 <= len(events) < 40
        assert events == sample_events("w", 1, len(events))
        head = store.head("w")
        assert head == len(events)
        assert store.append("w", sample_events("w", head + 1, 1), expected_seq=head) == head + 1


# -- Redis ----------------------------------------------------------------------------------


@pytest.fixture
def volatile_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        down.service_missing("redis-server is not installed")
    server = PrivateRedis(tmp_path, aof=False)
    server.start()
    yield server
    server.kill()


def test_redis_without_persistence_restarted_mid_run_says_the_log_vanished(
    volatile_redis: PrivateRedis,
) -> None:
    from statecore.backends.redis import RedisStore

    store = RedisStore(volatile_redis.url, retries=8, backoff=0.05)
    try:
        thread, outcome = down.start_in_thread(store, "volatile")
        assert down.OUTAGE.blocked.wait(30)
        wait_until(lambda: down.others_committed(store, "volatile"), "the others committed")
        volatile_redis.kill()
        volatile_redis.start()
        down.OUTAGE.proceed.set()
        thread.join(60)
        assert not thread.is_alive()
        error = outcome.get("error")
        assert isinstance(error, CorruptEvent), repr(error)
        assert "vanished from the server" in str(error)
        assert f"127.0.0.1:{volatile_redis.port}" in str(error)
        # Nothing is left to resume from: resume says so rather than starting over.
        with pytest.raises(RunNotFound):
            resume("volatile", down.outage_flow, store=store, runner=LocalRunner(**RUNNER))
    finally:
        store.close()


def test_client_kill_of_the_store_s_connections_mid_run_is_survived(
    private_redis: PrivateRedis,
) -> None:
    import redis

    from statecore.backends.redis import RedisStore

    store = RedisStore(private_redis.url, retries=5, backoff=0.02)
    admin = redis.Redis(port=private_redis.port)
    kills = 0
    try:
        thread, outcome = down.start_in_thread(store, "killed")
        assert down.OUTAGE.blocked.wait(30)
        for _ in range(20):
            kills += int(admin.client_kill_filter(_type="normal", skipme=True))
            time.sleep(0.02)
        down.OUTAGE.proceed.set()
        thread.join(60)
        assert not thread.is_alive()
        assert "error" not in outcome, repr(outcome.get("error"))
        state = outcome["state"]
        assert state.is_successful() and state.result[down.TOTAL].result == 100
        assert down.OUTAGE.calls == down.Counter({1: 1, 2: 1, 3: 1, 4: 1})
        down.assert_chain(store.read("killed"))
    finally:
        admin.close()
        store.close()
    assert kills >= 1


def test_debug_sleep_beyond_the_timeout_fails_clearly_then_resumes(
    private_redis: PrivateRedis,
) -> None:
    from statecore.backends.redis import RedisStore

    url = f"{private_redis.url}?socket_timeout=0.3"
    store = RedisStore(url, retries=1, backoff=0.01)
    # 6 s: far beyond the store's 2 x 0.3 s, so the driver gives up even on a busy machine.
    # redis-cli in a process of its own, so nothing in this process shares its socket.
    cli_path = shutil.which("redis-cli") or "redis-cli"
    sleeper: list[subprocess.Popen[bytes]] = []

    def sleep() -> None:
        sleeper.append(
            subprocess.Popen(
                [cli_path, "-p", str(private_redis.port), "DEBUG", "SLEEP", "6"],
                stdout=subprocess.DEVNULL,
            )
        )
        wait_until(lambda: _server_busy(private_redis.port), "the server to fall asleep")

    def wake() -> None:
        assert sleeper[0].wait(60) == 0

    try:
        error = outage_then_resume(store, "asleep", sleep, wake, may_land_late=True)
    finally:
        for proc in sleeper:
            proc.wait(60)
        store.close()
    assert "unavailable" in str(error)
    assert "Timeout" in str(error)


def _server_busy(port: int) -> bool:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # no retries: redis-py's default ones would wait the sleep out
    client = redis.Redis(port=port, socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
    try:
        client.ping()
        return False
    except redis.TimeoutError:
        return True
    finally:
        client.close()
