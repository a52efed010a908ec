"""The SQLite store: the embedded default, one database file per project.

Layout (see ``_MIGRATIONS``): ``events`` is the log, keyed ``(run_id, seq)`` without a
rowid so a run's stream is one contiguous stretch of the primary-key B-tree; ``runs``
holds the metadata the runner sends with its appends; ``leases`` holds each run's
current lease and epoch; ``retired_epochs`` keeps the last epoch of each run id whose
lease a prune removed; ``cache`` holds cached task results; ``schema_version`` records
which migrations have been applied.

How it stays correct under concurrency:

* Every write runs in ``BEGIN IMMEDIATE`` ... ``COMMIT``, so the writer holds SQLite's
  write lock from its first read; the head and lease checks of an append and its inserts
  see one state, and two writers can never both pass the same check.
* The database is in WAL mode, so readers never block the writer and vice versa.
* Each thread has its own connection (``sqlite3`` connections must not be shared by
  threads that run statements at the same time), and each connection waits up to
  ``busy_timeout`` for the write lock before giving up.

Every ``sqlite3`` exception is translated in one place, :func:`_translated`: a
duplicate ``(run_id, seq)`` becomes :class:`~statecore.errors.ConcurrencyError`, a
locked or unreadable database :class:`~statecore.errors.StoreUnavailable` naming the file.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import replace
from itertools import chain, starmap
from pathlib import Path
from typing import Any, Concatenate, Final, Literal, ParamSpec, Self, TypeVar, cast
from urllib.parse import quote

from statecore.backends.base import (
    LEGACY_CANCEL_PREFIX,
    LEGACY_CANCEL_TTL_NS,
    CacheEntry,
    Lease,
    RunMeta,
    Store,
)
from statecore.errors import (
    ConcurrencyError,
    CorruptEvent,
    LeaseHeld,
    LeaseLost,
    StatecoreError,
    StoreUnavailable,
)
from statecore.events import EventRow, StoredEvent, make_event

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

Synchronous = Literal["NORMAL", "FULL"]

# The first key after every "statecore-cancel:..." key: the prefix with its ':' bumped.
_LEGACY_CANCEL_END: Final = LEGACY_CANCEL_PREFIX[:-1] + chr(ord(LEGACY_CANCEL_PREFIX[-1]) + 1)

# Each entry is one schema version: the statements that take a database from the
# previous version to it. Entries are never edited once released, only appended.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE events (
            run_id    TEXT    NOT NULL,
            seq       INTEGER NOT NULL,
            epoch     INTEGER NOT NULL,
            prev_hash BLOB    NOT NULL,
            kind      TEXT    NOT NULL,
            ts        INTEGER NOT NULL,
            payload   BLOB    NOT NULL,
            PRIMARY KEY (run_id, seq)
        ) WITHOUT ROWID""",
        """CREATE TABLE runs (
            run_id     TEXT    NOT NULL PRIMARY KEY,
            flow_name  TEXT    NOT NULL,
            state      TEXT    NOT NULL,
            started    INTEGER NOT NULL,
            ended      INTEGER,
            parent_run TEXT
        ) WITHOUT ROWID""",
        "CREATE INDEX runs_by_started ON runs (started, run_id)",
        "CREATE INDEX runs_by_flow ON runs (flow_name, started, run_id)",
        "CREATE INDEX runs_by_state ON runs (state, started, run_id)",
        "CREATE INDEX runs_by_ended ON runs (ended) WHERE ended IS NOT NULL",
        """CREATE TABLE leases (
            run_id  TEXT    NOT NULL PRIMARY KEY,
            owner   TEXT    NOT NULL,
            epoch   INTEGER NOT NULL,
            expires INTEGER NOT NULL
        ) WITHOUT ROWID""",
        # The integer key orders entries by insertion, which is what "newest first" means.
        """CREATE TABLE cache (
            id      INTEGER PRIMARY KEY,
            key     TEXT    NOT NULL,
            payload BLOB    NOT NULL,
            expires INTEGER NOT NULL
        )""",
        "CREATE INDEX cache_by_key ON cache (key, id)",
    ),
    # Prune deletes a finished run's lease; this keeps its epoch, so a reused run id's
    # next lease is numbered above every lease issued before the prune (fencing tokens
    # never repeat for a run id). A row lives only until the id is leased again.
    (
        """CREATE TABLE retired_epochs (
            run_id TEXT    NOT NULL PRIMARY KEY,
            epoch  INTEGER NOT NULL
        ) WITHOUT ROWID""",
    ),
    # Cancellation requests get a table of their own. Older versions kept them as cache
    # entries under "statecore-cancel:<run id>" that lived a day; the unexpired ones move
    # here (``:now`` is the migrating process's clock) and the rest go.
    (
        """CREATE TABLE cancellations (
            run_id    TEXT    NOT NULL PRIMARY KEY,
            requested INTEGER NOT NULL
        ) WITHOUT ROWID""",
        f"""INSERT OR IGNORE INTO cancellations (run_id, requested)
            SELECT substr(key, {len(LEGACY_CANCEL_PREFIX) + 1}),
                   min(expires) - {LEGACY_CANCEL_TTL_NS}
            FROM cache WHERE key >= '{LEGACY_CANCEL_PREFIX}' AND key < '{_LEGACY_CANCEL_END}'
            AND expires > :now GROUP BY key""",
        f"""DELETE FROM cache
            WHERE key >= '{LEGACY_CANCEL_PREFIX}' AND key < '{_LEGACY_CANCEL_END}'""",
    ),
)

#: The schema version this statecore writes.
SCHEMA_VERSION: Final = len(_MIGRATIONS)
_CANCELLATIONS_SCHEMA: Final = 3

_SYNCHRONOUS: Final = ("NORMAL", "FULL")
_NS_PER_S: Final = 1e9
_SCHEMA_SQL: Final = (
    "CREATE TABLE IF NOT EXISTS schema_version "
    "(version INTEGER NOT NULL PRIMARY KEY, applied INTEGER NOT NULL)"
)

_HEAD: Final = "SELECT seq FROM events WHERE run_id = ? ORDER BY seq DESC LIMIT 1"
_EPOCH: Final = "SELECT epoch FROM leases WHERE run_id = ?"
_INSERT_EVENT: Final = (
    "INSERT INTO events (run_id, seq, epoch, prev_hash, kind, ts, payload) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_READ: Final = (
    "SELECT seq, epoch, prev_hash, kind, ts, payload FROM events "
    "WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?"
)
# Replay's read: only the columns the fold uses, in pages of _SCAN_PAGE rows by seq (the
# primary key), so no cursor stays open across the caller's work and every driver error
# is raised inside the translated boundary.
_SCAN: Final = (
    "SELECT seq, kind, ts, payload FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?"
)
_SCAN_PAGE: Final = 8192
_UPSERT_RUN: Final = (
    "INSERT INTO runs (run_id, flow_name, state, started, ended, parent_run) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET "
    "flow_name = excluded.flow_name, state = excluded.state, started = excluded.started, "
    "ended = excluded.ended, parent_run = excluded.parent_run"
)
# Columns in RunMeta's field order; the head comes from the log in the same statement,
# so it is consistent with the metadata it is returned with.
_SELECT_RUNS: Final = (
    "SELECT r.run_id, r.flow_name, r.state, r.started, r.ended, "
    "coalesce((SELECT e.seq FROM events e WHERE e.run_id = r.run_id "
    "ORDER BY e.seq DESC LIMIT 1), 0), r.parent_run FROM runs r"
)
_FINISHED_BEFORE: Final = "SELECT run_id FROM runs WHERE ended IS NOT NULL AND ended < ?"
_UPSERT_LEASE: Final = (
    "INSERT INTO leases (run_id, owner, epoch, expires) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, epoch = excluded.epoch, "
    "expires = excluded.expires"
)

# Extended result codes of a duplicate key: the only integrity errors that mean "someone
# else appended first" rather than "this value cannot be stored".
_DUPLICATE_KEY: Final = frozenset({1555, 2067})  # SQLITE_CONSTRAINT_PRIMARYKEY, _UNIQUE


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced (the C type cannot), so the store can
    find every thread's connection in ``close()`` without keeping dead threads' alive."""


_make_event: Final = make_event

# A forked child must not use (or close) connections inherited from its parent: SQLite's
# locks are per process. Counting forks lets each store notice and open fresh ones.
_forks = 0
# Connections inherited across a fork are kept referenced here and never closed, because
# closing them in the child could disturb the parent's locks and WAL (SQLite's advice).
_inherited: list[sqlite3.Connection] = []


def _after_fork_in_child() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_after_fork_in_child)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _translated(
    method: Callable[Concatenate[SQLiteStore, _P], _R],
) -> Callable[Concatenate[SQLiteStore, _P], _R]:
    """The one boundary where driver errors become statecore errors."""

    @functools.wraps(method)
    def wrapper(self: SQLiteStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.IntegrityError as exc:
            if exc.sqlite_errorcode in _DUPLICATE_KEY:
                raise ConcurrencyError(
                    f"SQLite store at {self.path}: another writer appended first ({exc})"
                ) from exc
            raise StatecoreError(f"SQLite store at {self.path} refused a value: {exc}") from exc
        except (sqlite3.InterfaceError, sqlite3.ProgrammingError, sqlite3.DataError) as exc:
            # A value of a type SQLite cannot bind, or a connection closed by close().
            raise StatecoreError(f"SQLite store at {self.path} refused the call: {exc}") from exc
        except sqlite3.Error as exc:
            raise _fault(self, exc) from exc
        except UnicodeEncodeError as exc:
            raise StatecoreError(
                f"SQLite store at {self.path} cannot store text that is not valid "
                f"Unicode (a run id or key with a lone surrogate?): {exc}"
            ) from exc
        except OverflowError as exc:
            raise StatecoreError(
                f"SQLite store at {self.path} cannot store an integer outside 64 bits: {exc}"
            ) from exc
        except OSError as exc:
            raise StoreUnavailable(f"SQLite store at {self.path} is unavailable: {exc}") from exc

    return wrapper


def _fault(store: SQLiteStore, exc: sqlite3.Error) -> StatecoreError:
    """The statecore error for a failed SQLite call, naming what went wrong."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = -1 if code is None else code & 0xFF
    where = f"SQLite store at {store.path}"
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return CorruptEvent(
            f"{where} is damaged ({exc}): the file is not a sound database any more; "
            "restore it from a backup (`sqlite3 FILE .recover` may save what is intact)"
        )
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        what = (
            f"locked by another connection for longer than its busy_timeout "
            f"({store.busy_timeout:g} s)"
        )
    elif primary == sqlite3.SQLITE_FULL:
        what = "full: the disk (or the database's max_page_count) has no room left"
    elif primary == sqlite3.SQLITE_READONLY or (
        primary in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN) and not store._writable()
    ):
        # A write refused by the OS reaches SQLite as an I/O error; access() says why.
        what = (
            "read-only now (the file, its -wal/-shm files or directory were made "
            "immutable, read-only or lost their write permission)"
        )
    elif primary == sqlite3.SQLITE_CANTOPEN:
        what = "unavailable: the file (or its -wal/-shm files) cannot be opened"
    elif primary == sqlite3.SQLITE_IOERR:
        what = "unavailable: the operating system reported an I/O error"
    else:
        what = "unavailable"
    return StoreUnavailable(f"{where} is {what} ({exc}); nothing of the failed call was committed")


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that holds the write lock from its first statement."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            # The original error says more than a failed rollback would.
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _identity(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _event_rows(
    run_id: str, events: Sequence[StoredEvent], expected_seq: int
) -> tuple[list[tuple[str, int, int, bytes, str, int, bytes]], str | None]:
    """The rows to insert, or the reason the batch is misnumbered (checked later, in the
    transaction, so a stale head is reported before a misnumbered batch, as everywhere)."""
    rows = []
    seq = expected_seq
    for event in events:
        seq += 1
        if event.run_id != run_id or event.seq != seq:
            return [], (
                f"run {run_id!r}: event {event.run_id!r}#{event.seq} where "
                f"{run_id!r}#{seq} was expected"
            )
        rows.append(
            (run_id, seq, event.epoch, event.prev_hash, event.kind, event.ts, event.payload)
        )
    return rows, None


class SQLiteStore(Store):
    """A store in one SQLite database file, shared by threads and processes.

    Args:
        path: the database file. Missing parent directories are created; a new file is
            created readable by its owner only (mode 0600), because run logs hold results
            and parameters.
        synchronous: ``"NORMAL"`` (the default) survives a process kill; ``"FULL"`` also
            survives a power cut, at the cost of an fsync per commit.
        busy_timeout: seconds a writer waits for another's write lock before the call
            fails with :class:`~statecore.errors.StoreUnavailable`.
        url: the URL this store was opened from, for messages; default ``sqlite:///path``.

    Raises:
        StoreUnavailable: the file or its directory cannot be created or opened, or it
            was written by a newer statecore.
        ValueError: ``synchronous`` is not NORMAL or FULL, or ``path`` is ``:memory:``
            (use :class:`~statecore.backends.memory.MemoryStore`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 5.0,
        url: str | None = None,
    ) -> None:
        raw = os.fspath(path)
        if raw in ("", ":memory:"):
            raise ValueError(
                "SQLiteStore needs a file: every thread opens its own connection, so an "
                "in-memory database would not be shared; use MemoryStore for that"
            )
        mode = synchronous.upper()
        if mode not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        if busy_timeout < 0:
            raise ValueError(f"busy_timeout must be >= 0 seconds, not {busy_timeout!r}")
        # Absolute now, so a later chdir cannot point new threads' connections elsewhere.
        self.path = Path(os.path.abspath(raw))
        self.synchronous: Synchronous = cast(Synchronous, mode)
        self.busy_timeout = float(busy_timeout)
        self.url = url if url is not None else f"sqlite:///{self.path}"
        self._local = threading.local()
        self._lock = threading.Lock()
        # Every thread's connection, with the fork count it was opened under.
        self._connections: weakref.WeakKeyDictionary[_Connection, int] = weakref.WeakKeyDictionary()
        self._generation = 0
        #: True when the file or its directory cannot be written (a read-only mount,
        #: ``chattr +i``, no permission): the store opens for reading and every write
        #: raises :class:`~statecore.errors.StoreUnavailable` saying so.
        self.read_only = False
        # A read-only WAL database without its -shm file can only be opened immutable.
        self._immutable = False
        self._schema = SCHEMA_VERSION
        self._identity = self._create_file()
        self._open()

    # -- connections ---------------------------------------------------------------------

    def _create_file(self) -> tuple[int, int]:
        """Create the file if it is missing; return its (device, inode)."""
        try:
            return _identity(self.path)
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as exc:
            raise StoreUnavailable(
                f"SQLite store at {self.path}: cannot open the database file ({exc})"
            ) from exc
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Create the file ourselves: sqlite3 would create it with the umask's mode
            # (often world-readable), and the WAL and shared-memory files copy its mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            return _identity(self.path)
        except OSError as exc:
            raise StoreUnavailable(
                f"SQLite store at {self.path}: cannot create the database file ({exc})"
            ) from exc

    def _writable(self) -> bool:
        # access() answers for this process's user, and says no on a read-only mount or
        # an immutable file even to root, which file modes do not stop.
        return os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK)

    def _uri(self) -> str:
        return f"file:{quote(str(self.path))}"

    def _connection(self) -> sqlite3.Connection:
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is not None and local.key == (self._generation, _forks):
            return conn
        return self._connect()

    def _connect(self) -> sqlite3.Connection:
        local = self._local
        stale: sqlite3.Connection | None = getattr(local, "conn", None)
        if stale is not None and local.key[1] != _forks:
            _inherited.append(stale)
        # mode=rw: never let sqlite3 recreate a deleted file behind our back with the
        # umask's permissions; a missing file is an error.
        mode = "mode=rw"
        if self.read_only:
            mode = "mode=ro&immutable=1" if self._immutable else "mode=ro"
        conn = sqlite3.connect(
            f"{self._uri()}?{mode}",
            uri=True,
            timeout=self.busy_timeout,
            isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
            check_same_thread=False,  # so close() may close other threads' connections
            factory=_Connection,
        )
        try:
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        except BaseException:
            conn.close()
            raise
        local.conn = conn
        local.key = (self._generation, _forks)
        with self._lock:
            self._connections[conn] = _forks
        return conn

    @_translated
    def _open(self) -> None:
        """Check the schema with plain reads; write only to create or migrate it.

        Opening an up-to-date WAL database takes no lock, so readers (``show``,
        ``export``, ``verify``) never wait on a writer, and a read-only file opens.
        """
        self.read_only = not self._writable()
        if self.read_only:
            try:
                version = self._version(self._connection())
            except sqlite3.OperationalError as exc:
                # A WAL database whose -shm file is gone (closed cleanly) and cannot be
                # created: with nobody able to write here, reading it as immutable is
                # safe. Not when a -wal file is left: its commits would be ignored.
                if exc.sqlite_errorcode != sqlite3.SQLITE_CANTOPEN or os.path.exists(
                    f"{self.path}-wal"
                ):
                    raise
                self._immutable = True
                self.close()
                version = self._version(self._connection())
            self._check_version(version)
            self._schema = version
            return
        conn = self._connection()
        version = self._version(conn)
        self._check_version(version)
        mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        if version == SCHEMA_VERSION and mode == "wal":
            return
        self._enter_wal(conn)
        with _immediate(conn):
            # Again under the write lock: another process may have migrated meanwhile.
            conn.execute(_SCHEMA_SQL)
            current = self._version(conn)
            self._check_version(current)
            now = time.time_ns()
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version - 1]:
                    conn.execute(statement, {"now": now} if ":now" in statement else ())
                conn.execute(
                    "INSERT INTO schema_version (version, applied) VALUES (?, ?)",
                    (version, now),
                )

    @staticmethod
    def _version(conn: sqlite3.Connection) -> int:
        """The schema version of the file; 0 for a file without statecore's tables."""
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if found is None:
            return 0
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        return int(row[0])

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"SQLite store at {self.path} has schema version {version}, newer than "
                f"this statecore's {SCHEMA_VERSION}; upgrade statecore"
            )
        if self.read_only and version == 0:
            raise StoreUnavailable(
                f"SQLite store at {self.path} is read-only and holds no statecore log"
            )

    @contextmanager
    def _write(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """A write transaction on the file this store opened, refused when read-only."""
        if self.read_only:
            raise StoreUnavailable(
                f"SQLite store at {self.path} is read-only (a read-only mount, an immutable "
                "file or no write permission on it or its directory): it can be read, "
                "not written"
            )
        with _immediate(conn):
            # SQLite keeps writing to a file that was deleted or moved away while open,
            # and those commits would be lost with it: refuse them, under the lock.
            try:
                moved = _identity(self.path) != self._identity
            except FileNotFoundError:
                moved = True
            if moved:
                raise StoreUnavailable(
                    f"SQLite store at {self.path}: the database file was removed, moved or "
                    "replaced while open (or its directory was); nothing more is written "
                    "to it. Put it back and resume the run"
                )
            yield conn

    def _enter_wal(self, conn: sqlite3.Connection) -> None:
        """Switch a new file to WAL; processes opening it at once may race for that.

        The switch needs the file to itself, and SQLite answers "locked" at once (without
        its busy handler) while another process holds it, so the switch is retried within
        the busy timeout.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def __enter__(self) -> Self:
        return self

    def close(self) -> None:
        """Close every thread's connection to the file.

        The store stays usable: a thread that calls it again opens a new connection.
        Call it when no other thread is in the middle of a call on this store.
        """
        with self._lock:
            self._generation += 1
            connections = [conn for conn, forks in self._connections.items() if forks == _forks]
            self._connections = weakref.WeakKeyDictionary()
        for conn in connections:
            with suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()

    # -- the log -------------------------------------------------------------------------

    @_translated
    def append(
        self,
        run_id: str,
        events: Sequence[StoredEvent],
        *,
        expected_seq: int,
        lease: Lease | None = None,
        run_meta: RunMeta | None = None,
    ) -> int:
        rows, misnumbered = _event_rows(run_id, events, expected_seq)
        conn = self._connection()
        with self._write(conn):
            found = conn.execute(_HEAD, (run_id,)).fetchone()
            head = 0 if found is None else found[0]
            if head != expected_seq:
                raise ConcurrencyError(
                    f"run {run_id!r}: expected head {expected_seq}, found {head}"
                )
            if lease is not None:
                found = conn.execute(_EPOCH, (run_id,)).fetchone()
                epoch = 0 if found is None else found[0]
                if epoch != lease.epoch:
                    raise LeaseLost(
                        f"run {run_id!r}: lease epoch {lease.epoch} is no longer current "
                        f"(now {epoch})"
                    )
            if misnumbered is not None:
                raise ConcurrencyError(misnumbered)
            if rows:
                conn.executemany(_INSERT_EVENT, rows)
            if run_meta is not None:
                conn.execute(
                    _UPSERT_RUN,
                    (
                        run_id,
                        run_meta.flow_name,
                        run_meta.state,
                        run_meta.started,
                        run_meta.ended,
                        run_meta.parent_run,
                    ),
                )
        return expected_seq + len(rows)

    @_translated
    def read(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        if limit is not None and limit <= 0:
            return []
        cursor = self._connection().execute(_READ, (run_id, after, -1 if limit is None else limit))
        # The run id is not selected: every row has the caller's, and reusing that one
        # string saves decoding it per row.
        return list(starmap(functools.partial(_make_event, run_id), cursor))

    def scan(self, run_id: str, *, after: int = 0) -> Iterator[EventRow]:
        # chain flattens the pages in C: the fold's loop pays nothing per row for paging
        return chain.from_iterable(self._scan_pages(run_id, after))

    def _scan_pages(self, run_id: str, after: int) -> Iterator[list[EventRow]]:
        while True:
            page = self._scan_page(run_id, after)
            if page:
                yield page
            if len(page) < _SCAN_PAGE:
                return
            after = page[-1][0]

    @_translated
    def _scan_page(self, run_id: str, after: int) -> list[EventRow]:
        rows: list[EventRow] = (
            self._connection().execute(_SCAN, (run_id, after, _SCAN_PAGE)).fetchall()
        )
        return rows

    @_translated
    def head(self, run_id: str) -> int:
        found = self._connection().execute(_HEAD, (run_id,)).fetchone()
        return 0 if found is None else int(found[0])

    # -- runs ----------------------------------------------------------------------------

    @_translated
    def get_run(self, run_id: str) -> RunMeta | None:
        row = self._connection().execute(f"{_SELECT_RUNS} WHERE r.run_id = ?", (run_id,)).fetchone()
        return None if row is None else RunMeta(*row)

    @_translated
    def list_runs(
        self,
        *,
        flow_name: str | None = None,
        state: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
    ) -> list[RunMeta]:
        if limit is not None and limit <= 0:
            return []
        # Only these fixed fragments reach the SQL text; every value is a parameter.
        clauses: list[str] = []
        params: list[object] = []
        for clause, value in (
            ("r.flow_name = ?", flow_name),
            ("r.state = ?", state),
            ("r.started >= ?", since),
            ("r.started < ?", until),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(-1 if limit is None else limit)
        sql = f"{_SELECT_RUNS}{where} ORDER BY r.started DESC, r.run_id DESC LIMIT ?"
        return list(starmap(RunMeta, self._connection().execute(sql, params)))

    @_translated
    def prune(self, *, before: int) -> int:
        conn = self._connection()
        with self._write(conn):
            conn.execute(f"DELETE FROM events WHERE run_id IN ({_FINISHED_BEFORE})", (before,))
            # The lease goes, so no lease issued so far matches the run's (now absent)
            # current epoch; its number stays behind for the next acquire_lease.
            conn.execute(
                "INSERT INTO retired_epochs (run_id, epoch) SELECT run_id, epoch FROM leases "
                f"WHERE run_id IN ({_FINISHED_BEFORE}) "
                "ON CONFLICT (run_id) DO UPDATE SET epoch = max(epoch, excluded.epoch)",
                (before,),
            )
            conn.execute(f"DELETE FROM leases WHERE run_id IN ({_FINISHED_BEFORE})", (before,))
            conn.execute(
                f"DELETE FROM cancellations WHERE run_id IN ({_FINISHED_BEFORE})", (before,)
            )
            pruned = conn.execute(
                "DELETE FROM runs WHERE ended IS NOT NULL AND ended < ?", (before,)
            ).rowcount
        return int(pruned)

    # -- leases --------------------------------------------------------------------------

    @_translated
    def acquire_lease(self, run_id: str, *, owner: str, ttl: float, now: int) -> Lease:
        conn = self._connection()
        with self._write(conn):
            current = conn.execute(
                "SELECT owner, epoch, expires FROM leases WHERE run_id = ?", (run_id,)
            ).fetchone()
            if current is not None:
                holder, epoch, expires = current
                if expires > now and holder != owner:
                    raise LeaseHeld(
                        f"run {run_id!r} is being driven by {holder} (lease epoch {epoch})"
                    )
                last = epoch
            else:
                retired = conn.execute(
                    "SELECT epoch FROM retired_epochs WHERE run_id = ?", (run_id,)
                ).fetchone()
                last = 0 if retired is None else retired[0]
                if retired is not None:
                    # From here on the lease row carries the run id's last epoch.
                    conn.execute("DELETE FROM retired_epochs WHERE run_id = ?", (run_id,))
            lease = Lease(run_id, owner, last + 1, now + int(ttl * _NS_PER_S))
            conn.execute(_UPSERT_LEASE, (run_id, owner, lease.epoch, lease.expires))
        return lease

    @_translated
    def renew_lease(self, lease: Lease, *, ttl: float, now: int) -> Lease:
        conn = self._connection()
        with self._write(conn):
            found = conn.execute(_EPOCH, (lease.run_id,)).fetchone()
            if found is None or found[0] != lease.epoch:
                raise LeaseLost(f"run {lease.run_id!r}: lease epoch {lease.epoch} was taken over")
            renewed = replace(lease, expires=now + int(ttl * _NS_PER_S))
            # The row becomes the renewed lease as a whole, owner included, as in every
            # store. (An epoch is issued once per run id, even across prunes, so the owner
            # written here is the one the row already has.)
            conn.execute(
                "UPDATE leases SET owner = ?, expires = ? WHERE run_id = ?",
                (renewed.owner, renewed.expires, lease.run_id),
            )
        return renewed

    @_translated
    def release_lease(self, lease: Lease) -> None:
        conn = self._connection()
        with self._write(conn):
            # Expire rather than delete: the epoch must survive so the next one is higher.
            conn.execute(
                "UPDATE leases SET expires = 0 WHERE run_id = ? AND epoch = ?",
                (lease.run_id, lease.epoch),
            )

    @_translated
    def get_lease(self, run_id: str) -> Lease | None:
        row = (
            self._connection()
            .execute("SELECT run_id, owner, epoch, expires FROM leases WHERE run_id = ?", (run_id,))
            .fetchone()
        )
        return None if row is None else Lease(*row)

    # -- cache ---------------------------------------------------------------------------

    @_translated
    def cache_put(self, key: str, payload: bytes, *, expires: int) -> None:
        conn = self._connection()
        with self._write(conn):
            conn.execute(
                "INSERT INTO cache (key, payload, expires) VALUES (?, ?, ?)",
                (key, payload, expires),
            )

    @_translated
    def cache_get(self, key: str, *, now: int) -> list[CacheEntry]:
        cursor = self._connection().execute(
            "SELECT key, payload, expires FROM cache WHERE key = ? AND expires > ? "
            "ORDER BY id DESC",
            (key, now),
        )
        return list(starmap(CacheEntry, cursor))

    # -- cancellation ----------------------------------------------------------------------

    @_translated
    def request_cancel(self, run_id: str, *, now: int) -> None:
        conn = self._connection()
        with self._write(conn):
            conn.execute(
                "INSERT OR IGNORE INTO cancellations (run_id, requested) VALUES (?, ?)",
                (run_id, now),
            )

    @_translated
    def cancel_requested(self, run_id: str, *, now: int) -> bool:
        conn = self._connection()
        if self._schema >= _CANCELLATIONS_SCHEMA:
            found = conn.execute(
                "SELECT 1 FROM cancellations WHERE run_id = ?", (run_id,)
            ).fetchone()
            return found is not None
        # A file of an older schema opened read-only: its requests are cache entries.
        return bool(self.cache_get(LEGACY_CANCEL_PREFIX + run_id, now=now))

    # -- inspection ----------------------------------------------------------------------

    @_translated
    def inspect(self) -> dict[str, Any]:
        """What is in the file, for ``statecore`` CLI output and debugging (not a hot path).

        Returns:
            ``path``, ``schema_version``, ``journal_mode``, ``synchronous`` (SQLite's
            number: 1 NORMAL, 2 FULL, as this thread's connection has it) and ``tables``,
            a mapping of table name to row count.
        """
        import sqlite_utils  # off the hot path: only inspection pays for the import

        conn = self._connection()
        version = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        info: dict[str, Any] = {
            "path": str(self.path),
            "schema_version": int(version[0]),
            "journal_mode": str(conn.execute("PRAGMA journal_mode").fetchone()[0]),
            "synchronous": int(conn.execute("PRAGMA synchronous").fetchone()[0]),
        }
        # A connection of its own, read-only and without sqlite-utils' plugins, so
        # inspecting can neither write nor change the settings of the store's connections.
        with closing(sqlite3.connect(f"{self._uri()}?mode=ro", uri=True)) as private:
            db = sqlite_utils.Database(private, recursive_triggers=False, execute_plugins=False)
            info["tables"] = {name: int(db[name].count) for name in sorted(db.table_names())}
        return info

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, synchronous={self.synchronous!r})"
