"""The SQLite store: the store contract, then what only a file-backed store can get wrong."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from statecore.backends import RunMeta, SQLiteStore, Store
from statecore.backends.sqlite import SCHEMA_VERSION
from statecore.errors import ConcurrencyError, CorruptEvent, StatecoreError, StoreUnavailable
from statecore.events import StoredEvent
from statecore.testing import StoreContractTests
from statecore.testing.stores import NOW, sample_events


class TestSQLiteStore(StoreContractTests):
    @pytest.fixture(autouse=True)
    def _database(self, tmp_path: Path) -> None:
        self.db_path = tmp_path / "runs.db"

    def make_store(self) -> Store:
        return SQLiteStore(self.db_path)

    def make_second_store(self) -> Store:
        return SQLiteStore(self.db_path)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dirs" / "runs.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(db_path)
    yield opened
    opened.close()


# -- the file -----------------------------------------------------------------------------


def test_file_is_created_owner_only_with_its_directories(store: SQLiteStore, db_path: Path) -> None:
    store.append("r1", sample_events("r1", 1, 3), expected_seq=0)
    assert db_path.is_file()
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    wal = db_path.with_name(db_path.name + "-wal")
    assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o600


def test_an_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    path.touch(mode=0o640)
    path.chmod(0o640)
    SQLiteStore(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_directory_that_cannot_be_created_is_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable, match="a-file"):
        SQLiteStore(blocker / "sub" / "runs.db")


def test_a_file_that_is_not_a_database_is_a_damaged_store(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not SQLite" * 100)
    # CorruptEvent: the CLI's exit 2 (a damaged log), not 4 (a store that is down)
    with pytest.raises(CorruptEvent, match=r"junk\.db is damaged"):
        SQLiteStore(path)


def test_memory_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="MemoryStore"):
        SQLiteStore(":memory:")


def test_relative_path_is_fixed_at_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = SQLiteStore("rel/runs.db")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    result: list[int] = []
    # A new thread opens a new connection; it must find the same file.
    worker = threading.Thread(target=lambda: result.append(store.head("r1")))
    store.append("r1", sample_events("r1", 1, 2), expected_seq=0)
    worker.start()
    worker.join()
    assert result == [2]
    assert store.path == tmp_path / "rel" / "runs.db"
    assert store.url == f"sqlite:///{tmp_path / 'rel' / 'runs.db'}"
    store.close()


# -- schema and settings --------------------------------------------------------------------


def test_schema_version_is_recorded_once(store: SQLiteStore, db_path: Path) -> None:
    info = store.inspect()
    assert info["schema_version"] == SCHEMA_VERSION
    assert info["journal_mode"] == "wal"
    assert {"events", "runs", "leases", "cache", "schema_version"} <= set(info["tables"])
    SQLiteStore(db_path).close()  # reopening applies nothing twice
    with sqlite3.connect(db_path) as raw:
        rows = raw.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert rows == [(v,) for v in range(1, SCHEMA_VERSION + 1)]


def test_a_version_1_file_is_migrated_and_its_epochs_survive_a_prune(db_path: Path) -> None:
    with SQLiteStore(db_path) as store:
        lease = store.acquire_lease("r", owner="a", ttl=60, now=NOW)
        done = RunMeta("r", "flow", "Success", NOW, NOW)
        store.append("r", sample_events("r", 1, 2), expected_seq=0, lease=lease, run_meta=done)
    # Back to what a statecore of schema version 1 left: no retired_epochs table.
    with closing(sqlite3.connect(db_path)) as raw, raw:
        raw.execute("DROP TABLE retired_epochs")
        raw.execute("DROP TABLE cancellations")
        raw.execute("DELETE FROM schema_version WHERE version > 1")
    with SQLiteStore(db_path) as store:
        assert store.inspect()["schema_version"] == SCHEMA_VERSION
        assert store.get_lease("r") == lease
        assert store.prune(before=NOW + 1) == 1
        assert store.acquire_lease("r", owner="b", ttl=60, now=NOW).epoch == lease.epoch + 1


def as_version_2(path: Path, legacy_cancels: dict[str, int]) -> None:
    """Make ``path`` what a statecore of schema version 2 left, with its cancellation
    requests kept as cache entries ``statecore-cancel:<run id>`` expiring at the times
    given."""
    with closing(sqlite3.connect(path)) as raw, raw:
        raw.execute("DROP TABLE cancellations")
        raw.execute("DELETE FROM schema_version WHERE version > 2")
        for run_id, expires in legacy_cancels.items():
            raw.execute(
                "INSERT INTO cache (key, payload, expires) VALUES (?, ?, ?)",
                (f"statecore-cancel:{run_id}", b"1", expires),
            )


def test_cancellations_written_as_cache_entries_by_version_2_are_migrated(
    db_path: Path,
) -> None:
    SQLiteStore(db_path).close()
    now = time.time_ns()
    day = 86_400 * 10**9
    as_version_2(db_path, {"live": now + day // 2, "stale": now - 1, "odd:id": now + day})
    with closing(sqlite3.connect(db_path)) as raw, raw:
        raw.execute("INSERT INTO cache (key, payload, expires) VALUES ('k', x'00', ?)", (now,))
    with SQLiteStore(db_path) as store:
        assert store.inspect()["schema_version"] == SCHEMA_VERSION
        assert store.cancel_requested("live", now=now)
        assert store.cancel_requested("odd:id", now=now)
        assert not store.cancel_requested("stale", now=now)  # had expired: not revived
        # the requests are rows of their own now; the cache keeps only real results
        tables = store.inspect()["tables"]
        assert tables["cancellations"] == 2
        assert tables["cache"] == 1
        with closing(sqlite3.connect(db_path)) as raw:
            requested = dict(raw.execute("SELECT run_id, requested FROM cancellations"))
        assert requested == {"live": now - day // 2, "odd:id": now}


def test_a_newer_schema_is_refused(store: SQLiteStore, db_path: Path) -> None:
    with sqlite3.connect(db_path) as raw:
        raw.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreUnavailable, match="upgrade statecore"):
        SQLiteStore(db_path)


@pytest.mark.parametrize(("setting", "pragma"), [("NORMAL", 1), ("FULL", 2), ("full", 2)])
def test_synchronous_setting_is_honoured(tmp_path: Path, setting: str, pragma: int) -> None:
    with SQLiteStore(tmp_path / "runs.db", synchronous=setting) as store:  # type: ignore[arg-type]
        assert store.inspect()["synchronous"] == pragma
        seen: list[int] = []
        worker = threading.Thread(target=lambda: seen.append(store.inspect()["synchronous"]))
        worker.start()
        worker.join()
        assert seen == [pragma]  # every thread's connection has it


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(tmp_path / "a.db", synchronous="OFF")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="busy_timeout"):
        SQLiteStore(tmp_path / "a.db", busy_timeout=-1)


# -- bad data and driver errors ---------------------------------------------------------------


def test_a_corrupt_payload_is_still_read_as_bytes(store: SQLiteStore, db_path: Path) -> None:
    store.append("r1", sample_events("r1", 1, 1), expected_seq=0)
    with sqlite3.connect(db_path) as raw:
        raw.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("r1", 2, 0, b"", "state", NOW, b"\xc1\xff garbage, not msgpack"),
        )
    events = store.read("r1")
    assert [e.seq for e in events] == [1, 2]
    assert events[1] == StoredEvent("r1", 2, 0, b"", "state", NOW, b"\xc1\xff garbage, not msgpack")
    assert store.head("r1") == 2


def test_a_locked_database_is_store_unavailable_naming_the_file(db_path: Path) -> None:
    store = SQLiteStore(db_path, busy_timeout=0.05)
    raw = sqlite3.connect(db_path, isolation_level=None)
    raw.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailable, match=r"runs\.db") as raised:
            store.append("r1", sample_events("r1", 1, 1), expected_seq=0)
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        with pytest.raises(StoreUnavailable):
            store.acquire_lease("r1", owner="a", ttl=1, now=NOW)
    finally:
        raw.execute("ROLLBACK")
        raw.close()
    assert store.append("r1", sample_events("r1", 1, 1), expected_seq=0) == 1
    store.close()


def test_a_unique_violation_is_a_concurrency_error(store: SQLiteStore, db_path: Path) -> None:
    # Another writer's row that collides with ours in a unique index: the insert fails
    # inside the transaction, and the caller sees ConcurrencyError, not IntegrityError.
    with sqlite3.connect(db_path) as raw:
        raw.execute("CREATE UNIQUE INDEX one_payload ON events (payload)")
    store.append("r1", sample_events("r1", 1, 1), expected_seq=0)
    clash = StoredEvent("r1", 2, 0, b"", "state", NOW, sample_events("r1", 1, 1)[0].payload)
    with pytest.raises(ConcurrencyError) as raised:
        store.append("r1", [*sample_events("r1", 2, 0), clash], expected_seq=1)
    assert isinstance(raised.value.__cause__, sqlite3.IntegrityError)
    assert store.head("r1") == 1


def test_values_sqlite_cannot_hold_are_refused_cleanly(store: SQLiteStore) -> None:
    with pytest.raises(StatecoreError, match="64 bits"):
        store.append("r1", [StoredEvent("r1", 1, 0, b"", "k", 2**64, b"")], expected_seq=0)
    with pytest.raises(StatecoreError, match="surrogate"):
        store.head("bad-\udcff")
    assert store.head("r1") == 0


# -- connections ------------------------------------------------------------------------------


def test_close_closes_every_thread_and_the_store_reopens(store: SQLiteStore) -> None:
    store.append("r1", sample_events("r1", 1, 1), expected_seq=0)
    opened, closed, go_on = threading.Event(), threading.Event(), threading.Event()
    heads: list[int] = []

    def other_thread() -> None:
        heads.append(store.head("r1"))
        opened.set()
        go_on.wait()
        heads.append(store.head("r1"))  # after close(): a new connection
        closed.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    opened.wait()
    connections = list(store._connections)
    assert len(connections) == 2
    store.close()
    for conn in connections:
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    go_on.set()
    closed.wait()
    worker.join()
    assert heads == [1, 1]
    assert store.append("r1", sample_events("r1", 2, 1), expected_seq=1) == 2


def _fork_child_appends(store: SQLiteStore) -> None:
    store.append("r1", sample_events("r1", 2, 1), expected_seq=1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_connection(store: SQLiteStore) -> None:
    store.append("r1", sample_events("r1", 1, 1), expected_seq=0)
    child = multiprocessing.get_context("fork").Process(target=_fork_child_appends, args=(store,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert store.read("r1") == sample_events("r1", 1, 2)
    assert store.append("r1", sample_events("r1", 3, 1), expected_seq=2) == 3


# -- several processes ------------------------------------------------------------------------

WRITERS = 4


def _append_own_run(path: str, writer: int, count: int) -> None:
    store = SQLiteStore(path)
    run_id = f"run-{writer}"
    for seq in range(1, count + 1):
        store.append(run_id, sample_events(run_id, seq, 1, tag=str(writer)), expected_seq=seq - 1)
    store.close()


def _append_contended(path: str, writer: int, count: int) -> None:
    store = SQLiteStore(path)
    done = 0
    while done < count:
        head = store.head("shared")
        event = sample_events("shared", head + 1, 1, tag=f"{writer}/{done}")
        try:
            store.append("shared", event, expected_seq=head)
        except ConcurrencyError:
            continue  # another process appended first: re-read the head and try again
        done += 1
    store.close()


def _run_processes(target: object, path: Path, count: int) -> None:
    spawn = multiprocessing.get_context("spawn")
    processes = [
        spawn.Process(target=target, args=(str(path), writer, count))  # type: ignore[arg-type]
        for writer in range(WRITERS)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(240)
    assert [process.exitcode for process in processes] == [0] * WRITERS


def test_processes_appending_to_their_own_runs(tmp_path: Path) -> None:
    # The processes also race to create the file and apply the migrations.
    path = tmp_path / "runs.db"
    _run_processes(_append_own_run, path, 1_000)
    with SQLiteStore(path) as store:
        for writer in range(WRITERS):
            run_id = f"run-{writer}"
            assert store.read(run_id) == sample_events(run_id, 1, 1_000, tag=str(writer))


def test_processes_contending_for_one_run_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    SQLiteStore(path).close()
    _run_processes(_append_contended, path, 250)
    with SQLiteStore(path) as store:
        events = store.read("shared")
    assert [e.seq for e in events] == list(range(1, WRITERS * 250 + 1))
    tags = [e.payload.split(b"#")[2].split(b"\x00")[0].decode() for e in events]
    assert sorted(tags) == sorted(f"{w}/{i}" for w in range(WRITERS) for i in range(250))
    for writer in range(WRITERS):  # each writer's own appends landed in its order
        mine = [int(tag.split("/")[1]) for tag in tags if tag.startswith(f"{writer}/")]
        assert mine == list(range(250))
