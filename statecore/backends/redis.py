"""The Redis store: run logs shared by processes and machines through Redis or Redis Cluster.

Open it with ``RedisStore.from_url("redis://host:6379/0")`` (or ``rediss://`` for TLS, or
``unix:///path/to/redis.sock?db=0``), or hand it a ``redis.Redis`` client you built. It
needs ``pip install 'statecore[redis]'`` (redis-py, and hiredis, which redis-py picks up
by itself and which makes reading a log about five times cheaper in CPU).

Redis Cluster
    Add ``?cluster=yes`` to a ``redis://`` or ``rediss://`` URL (database 0 only; more
    startup nodes with ``&node=host:port``), or hand the store a
    ``redis.cluster.RedisCluster`` client. Everything works on a cluster: a run's keys share
    one slot, so each script touches one node; the run index is one key on one node (every
    append that creates or re-dates a run writes it, and listing and pruning read it);
    pipelines across runs are split per node and are not atomic, which the store never
    needs them to be. ``WAIT`` is sent on the connection that made the append, to the
    run's primary. How commands reach the nodes is in
    :mod:`statecore.backends._redis_transport`.

Key layout
    Every key of a run carries the run's hash tag, so a run lives in one Redis Cluster slot
    and one Lua script can touch all of it::

        {prefix}:{<tag>}:events   stream; entry id ``0-<seq>``, fields e h k t p
                                  (epoch, prev_hash, kind, ts, payload)
        {prefix}:{<tag>}:meta     hash: run_id flow_name state started [ended]
                                  [parent_run] head epoch indexed; after a prune
                                  only retired_epoch (the id's last lease epoch)
        {prefix}:{<tag>}:lease    hash: owner epoch expires
        {prefix}:{<tag>}:cancel   string: when the run's cancellation was requested (ns)
        {prefix}:cache:{<tag>}    list of ``b"<expires>:<payload>"``, newest first
        {prefix}:runs             sorted set, the global run index (no tag: it spans runs);
                                  all scores 0, members ``<started as 16 hex>:<run_id>``
                                  so that lexicographic order is start-time order

    ``<tag>`` is the run id itself when it is readable (ASCII letters, digits and
    ``. _ - : @ +``, at most 128 characters); any other id (braces, spaces, quotes,
    unicode, long ids, the empty id) becomes ``=`` followed by the unpadded base64url of
    its UTF-8. Readable ids never contain ``=``, so the mapping is one-to-one and no run
    id can break out of its hash tag or name another run's keys. The original id is kept
    in the meta hash. Cache keys are encoded the same way. (Older versions kept a
    cancellation request as the cache entry ``statecore-cancel:<run id>``; it is still
    honoured until it expires.) The prefix (default
    ``statecore``) lets several applications share one Redis; it may not contain braces.

Appends
    One Lua script (loaded once, run with EVALSHA) checks the expected head and the lease
    epoch, then adds every event to the stream and writes the run's meta, so an append is
    all or nothing. The run index is written outside the script, after the first
    successful append of a run (or when its start time changes), and the meta field
    ``indexed`` records that it was; a process that dies in between leaves the run
    unlisted only until its next append with metadata.

Durability: what each Redis persistence setting risks
    * No persistence (``save ""``, ``appendonly no``): a restart of the server loses every
      run. Fine for tests and throwaway work only.
    * RDB snapshots only (``save 3600 1 ...``): a crash loses everything written since the
      last snapshot, minutes of events; a resumed run repeats those tasks and may find its
      log shorter than another process remembers.
    * AOF with ``appendfsync everysec`` (the usual production setting): a process crash
      loses nothing; a power cut or kernel crash loses about the last second of appends.
    * AOF with ``appendfsync always``: an acknowledged append is on disk; slower writes.
    * ``durable_wait=N`` adds ``WAIT N`` after each append: the append returns only once
      N replicas hold it (else :class:`~statecore.errors.StoreUnavailable`, with the
      events already on the primary). ``wait_aof=True`` adds ``WAITAOF 1 N``, which also
      waits for the local AOF fsync; it needs Redis 7.2 or newer and ``appendonly yes``,
      and is refused at construction otherwise.

    Fencing assumes a single primary (per slot, on a cluster). Replication is
    asynchronous: a failover to a replica that had not yet received the latest writes can
    lose acknowledged events *and* a lease acquisition, after which two drivers may both
    believe they hold the run. ``WAIT`` narrows the window but does not make Redis a
    consensus store.

Errors
    redis-py exceptions never leave this module. Connection errors, timeouts, a server
    still loading its data, ``READONLY`` during a failover, and on a cluster ``TRYAGAIN``,
    ``CLUSTERDOWN``, redirections that do not settle and a cluster that cannot be reached
    or whose slots are not all served, are retried ``retries`` times with exponential
    backoff starting at ``backoff`` seconds, then raise
    :class:`~statecore.errors.StoreUnavailable` naming the host and port, the socket path,
    or the cluster's nodes. An append retried after a lost reply is recognised if it did
    land. Build the client from a URL (the store then turns redis-py's own retries off) or
    pass one whose ``retry`` is disabled, so that retries are not compounded.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from itertools import chain
from typing import Any, TypeVar

import redis
from redis import exceptions as rx
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from statecore.backends._redis_codec import (
    decode_entries,
    decode_rows,
    meta_from_hash,
    pack_events,
    text,
    utf8,
)
from statecore.backends._redis_keys import (
    INT64,
    cache_key,
    cancel_key,
    index_key,
    index_member,
    run_keys,
    run_tag,
    split_member,
)
from statecore.backends._redis_scripts import (
    ACQUIRE,
    APPEND,
    CACHE_PUT,
    PRUNE,
    RELEASE,
    RENEW,
    Script,
)
from statecore.backends._redis_transport import (
    ClusterTransport,
    Queue,
    ServerTransport,
    Transport,
)
from statecore.backends._redis_url import DEFAULTS, ParsedURL, describe, describe_cluster, parse_url
from statecore.backends.base import (
    LEGACY_CANCEL_PREFIX,
    CacheEntry,
    Lease,
    RunMeta,
    Store,
)
from statecore.errors import (
    ConcurrencyError,
    CorruptEvent,
    InvalidStoreURL,
    LeaseHeld,
    LeaseLost,
    StatecoreError,
    StoreUnavailable,
)
from statecore.events import EventRow, StoredEvent

__all__ = ["RedisStore", "run_tag"]

T = TypeVar("T")
_log = logging.getLogger(__name__)


_MAX_BACKOFF = 2.0
_READ_PAGE = 1_000
_UNLIMITED = 2**63
_LIST_PAGE = 500
_CACHE_GRACE_MS = 300_000

# Errors that a later attempt may not meet: the connection, a failover, a loading server,
# and on a cluster a slot in migration (TRYAGAIN), CLUSTERDOWN, redirections that did not
# settle (ClusterError), no reachable startup node or an uncovered slot (redis-py raises
# those as RedisClusterException, which is not a RedisError).
_RETRYABLE: tuple[type[Exception], ...] = (
    rx.ConnectionError,
    rx.TimeoutError,
    rx.ReadOnlyError,
    rx.TryAgainError,
    rx.ClusterError,
    rx.RedisClusterException,
)
# Connection errors that another attempt will only repeat.
_REFUSED: tuple[type[Exception], ...] = (
    rx.AuthenticationError,
    rx.AuthorizationError,
    rx.NoPermissionError,
)


# -- the store -------------------------------------------------------------------------


class RedisStore(Store):
    """A :class:`~statecore.backends.base.Store` on Redis or Redis Cluster (see the module doc).

    Args:
        client_or_url: a ``redis.Redis`` or ``redis.cluster.RedisCluster`` client
            (``decode_responses=False``) or a URL as for :meth:`from_url`. A URL's query
            options apply, and naming an option in both the URL and a keyword with
            different values is refused.
        prefix: the first part of every key, so that several applications share a server.
        durable_wait: replicas that must acknowledge each append (``WAIT``); 0 for none.
        wait_aof: also wait for the AOF fsync (``WAITAOF``; Redis >= 7.2 with AOF on).
        wait_timeout: seconds that ``WAIT``/``WAITAOF`` may block.
        retries: further attempts after a connection error.
        backoff: the first pause between attempts, in seconds; doubled each time.

    Raises:
        InvalidStoreURL: a malformed URL.
        StoreUnavailable: a cluster URL whose cluster cannot be reached (a cluster client
            learns the slot map when it is made; a single server is first contacted on
            first use).
        StatecoreError: ``wait_aof`` on a server without ``WAITAOF`` or without AOF.
    """

    def __init__(
        self,
        client_or_url: redis.Redis[bytes] | RedisCluster[bytes] | str,
        *,
        prefix: str = "statecore",
        durable_wait: int = 0,
        wait_aof: bool = False,
        wait_timeout: float = 1.0,
        retries: int = 5,
        backoff: float = 0.05,
    ) -> None:
        options: dict[str, Any] = {
            "prefix": prefix,
            "durable_wait": durable_wait,
            "wait_aof": wait_aof,
            "wait_timeout": wait_timeout,
            "retries": retries,
            "backoff": backoff,
        }
        parsed = parse_url(client_or_url) if isinstance(client_or_url, str) else None
        if parsed is not None:
            for name, value in parsed.options.items():
                if options[name] not in (DEFAULTS[name], value):
                    raise InvalidStoreURL(
                        f"{name} is {value!r} in the URL {parsed.display!r} but "
                        f"{options[name]!r} as an argument"
                    )
                options[name] = value
        if not options["prefix"] or {"{", "}"} & set(options["prefix"]):
            raise ValueError(f"the key prefix {options['prefix']!r} must be non-empty, no braces")
        if min(options["durable_wait"], options["retries"], options["backoff"]) < 0:
            raise ValueError("durable_wait, retries and backoff cannot be negative")
        self.prefix: str = options["prefix"]
        self.durable_wait: int = options["durable_wait"]
        self.wait_aof: bool = options["wait_aof"]
        self.retries: int = options["retries"]
        self.backoff: float = options["backoff"]
        self._wait_ms = max(1, int(options["wait_timeout"] * 1000))
        self._index_key = index_key(self.prefix)
        # The epochs of the leases this handle acquired and holds: a run that vanishes
        # from under one of them lost its data on the server (see _check_not_vanished).
        self._leased: dict[str, int] = {}
        self._owns_client = parsed is not None
        self._transport: Transport
        if parsed is not None:
            self._where, self.url = parsed.where, parsed.display
            self._transport = self._connect(parsed)
        elif isinstance(client_or_url, RedisCluster):
            if client_or_url.get_connection_kwargs().get("decode_responses"):
                raise ValueError("RedisStore needs a client made with decode_responses=False")
            self._where, self.url = describe_cluster(client_or_url)
            self._transport = ClusterTransport(client_or_url)
        elif isinstance(client_or_url, redis.Redis):
            if client_or_url.connection_pool.connection_kwargs.get("decode_responses"):
                raise ValueError("RedisStore needs a client made with decode_responses=False")
            self._where, self.url = describe(client_or_url)
            self._transport = ServerTransport(client_or_url)
        else:
            raise TypeError(
                "RedisStore takes a URL, a redis.Redis or a redis.cluster.RedisCluster "
                f"client, not {type(client_or_url).__name__}"
            )
        self.cluster: bool = isinstance(self._transport, ClusterTransport)
        # Single-key commands go through the client itself; both kinds route them.
        self._client: Any = self._transport.client
        if self.wait_aof:
            try:
                self._run("check WAITAOF support", self._check_waitaof)
            except StatecoreError:
                self.close()
                raise

    def _connect(self, parsed: ParsedURL) -> Transport:
        # The store retries (and checks whether a retried append landed): redis-py's
        # own retries would repeat appends blindly.
        no_retries = Retry(NoBackoff(), 0)
        if not parsed.cluster_nodes:
            return ServerTransport(redis.Redis(**parsed.connection, retry=no_retries))
        nodes = [ClusterNode(host, port) for host, port in parsed.cluster_nodes]
        # A cluster client asks a startup node for the slot map as it is made.
        cluster: RedisCluster[bytes] = self._run(
            "learn the cluster's slot map",
            lambda: RedisCluster(startup_nodes=nodes, retry=no_retries, **parsed.connection),
        )
        return ClusterTransport(cluster)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        """Open ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` or
        ``unix://[[user]:password@]/path/to/socket[?db=N]``; add ``cluster=yes`` for a
        Redis Cluster (``redis://`` or ``rediss://``, database 0).

        Query options: ``prefix``, ``wait`` (replicas for ``WAIT``), ``wait_aof``,
        ``wait_timeout`` (seconds), ``retries``, ``backoff`` (seconds), ``db``,
        ``password``, ``socket_timeout``, ``socket_connect_timeout``, ``client_name``,
        ``cluster`` (yes/no), ``node`` (``host:port``, a further startup node of a
        cluster; repeatable) and, with ``rediss``, ``ssl_cert_reqs``, ``ssl_ca_certs``,
        ``ssl_certfile``, ``ssl_keyfile``. Keyword ``options`` are the constructor's.

        >>> RedisStore.from_url("redis://:secret@cache.example:6380/2?prefix=myapp").url
        'redis://:***@cache.example:6380/2?prefix=myapp'

        Raises:
            InvalidStoreURL: the URL is malformed or has an unknown option.
            StoreUnavailable: a cluster URL whose cluster cannot be reached.
        """
        return cls(url, **options)

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, prefix={self.prefix!r})"

    def keys_of(self, run_id: str) -> tuple[str, str, str]:
        """The (events, meta, lease) keys of ``run_id``."""
        return run_keys(self.prefix, run_id)

    # -- the one boundary where redis-py's errors become statecore's -------------------

    def _run(self, what: str, op: Callable[[], T]) -> T:
        """``op()``, retrying connection trouble with backoff; no Redis error escapes."""
        delay, failure = self.backoff, None
        for attempt in range(self.retries + 1):
            try:
                return op()
            except _REFUSED as exc:
                raise StoreUnavailable(f"{self._where} refused to {what}: {exc}") from exc
            except _RETRYABLE as exc:
                failure = exc
            except rx.RedisError as exc:
                raise StoreUnavailable(f"{self._where} failed to {what}: {exc}") from exc
            if attempt < self.retries:
                time.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF)
        raise StoreUnavailable(
            f"{self._where} is unavailable: could not {what} in "
            f"{self.retries + 1} attempts ({type(failure).__name__}: {failure})"
        ) from failure

    def _send(self, queue: Queue, *scripts: Script, key: str | None = None) -> list[Any]:
        """Send what ``queue`` puts on a pipeline in one round trip; reload lost scripts.

        With ``key``, every command is on that key's slot (one run's keys) and goes to its
        node on one connection; without, the commands may span runs and nodes and do not
        depend on one another. Raises the first error reply (for :meth:`_run`).
        """
        return self._transport.send(queue, scripts, key=key)

    def _eval(self, what: str, script: Script, keys: Sequence[str], *args: Any) -> Any:
        def queue(pipe: Any) -> None:
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)

        return self._run(what, lambda: self._send(queue, script, key=keys[0])[0])

    def _check_waitaof(self) -> None:
        for node, info in self._transport.info("server"):
            where = f"{self._where} (node {node})" if node else self._where
            version = str(info.get("redis_version", "0"))
            if tuple(int(p) for p in re.findall(r"\d+", version)[:2]) < (7, 2):
                raise StatecoreError(
                    f"wait_aof needs WAITAOF, which Redis {version} lacks ({where}; it "
                    "came in 7.2): upgrade the server, or drop wait_aof and keep "
                    "durable_wait (WAIT) with appendfsync always"
                )
        for node, info in self._transport.info("persistence"):
            where = f"{self._where} (node {node})" if node else self._where
            if str(info.get("aof_enabled")) != "1":
                raise StatecoreError(
                    f"wait_aof needs the append-only file, but {where} runs with "
                    "appendonly no: turn it on or drop wait_aof"
                )

    # -- the log -------------------------------------------------------------------------

    def append(
        self,
        run_id: str,
        events: Sequence[StoredEvent],
        *,
        expected_seq: int,
        lease: Lease | None = None,
        run_meta: RunMeta | None = None,
    ) -> int:
        keys = self.keys_of(run_id)[:2]
        new_head = expected_seq + len(events)
        bad = next(
            (
                (offset, event.seq)
                for offset, event in enumerate(events, start=1)
                if event.run_id != run_id or event.seq != expected_seq + offset
            ),
            None,
        )
        sets: list[Any] = []
        dels: list[str] = []
        started = ""
        if run_meta is not None:
            member = index_member(run_meta.started, run_id)
            started = str(run_meta.started)
            sets += ["run_id", utf8(run_meta.run_id), "flow_name", utf8(run_meta.flow_name)]
            sets += ["state", utf8(run_meta.state), "started", started]
            if run_meta.ended is None:
                dels.append("ended")
            else:
                sets += ["ended", run_meta.ended]
            if run_meta.parent_run is None:
                dels.append("parent_run")
            else:
                sets += ["parent_run", utf8(run_meta.parent_run)]
        args: list[Any] = [
            expected_seq,
            new_head,
            "" if lease is None else lease.epoch,
            "0" if bad is None else "1",
            0 if bad is not None else len(events),
            len(sets) // 2,
            len(dels),
            started,
            *sets,
            *dels,
        ]
        if bad is None and events:
            args.append(pack_events(events))

        def queue(pipe: Any) -> None:
            pipe.execute_command("EVALSHA", APPEND.sha, 2, *keys, *args)
            # On the append's own connection: WAIT vouches for that connection's writes.
            if self.wait_aof:
                pipe.execute_command("WAITAOF", 1, self.durable_wait, self._wait_ms)
            elif self.durable_wait:
                pipe.execute_command("WAIT", self.durable_wait, self._wait_ms)

        attempts = 0

        def send() -> list[Any]:
            nonlocal attempts
            attempts += 1
            replies = self._send(queue, APPEND, key=keys[0])
            # A lost reply may hide an attempt that landed: check, never guess.
            if (
                attempts > 1
                and int(replies[0][0]) == 1
                and int(replies[0][1]) == new_head
                and events
                and bad is None
                and self.read(run_id, after=expected_seq, limit=len(events)) == list(events)
            ):
                replies[0] = [0, new_head, 1, b""]
            return replies

        (code, found, *index), *waits = self._run(f"append to run {run_id!r}", send)
        if int(code) == 1 and int(found) == 0 and expected_seq > 0 and self._holds(lease):
            self._check_not_vanished(run_id, f"expected head {expected_seq}, found nothing")
        if int(code) == 1:
            raise ConcurrencyError(
                f"run {run_id!r}: expected head {expected_seq}, found {int(found)}"
            )
        if int(code) == 2:
            raise LeaseLost(
                f"run {run_id!r}: lease epoch {lease.epoch if lease else 0} is no longer "
                f"current (now {int(found)})"
            )
        if int(code) == 3 and bad is not None:
            raise ConcurrencyError(
                f"run {run_id!r}: event numbered {bad[1]} where "
                f"{expected_seq + bad[0]} was expected"
            )
        if int(code) == 4:
            raise CorruptEvent(
                f"run {run_id!r}: the stream ends at {found.decode()!r}, not at its head "
                f"{expected_seq}; nothing was appended"
            )
        if run_meta is not None and int(index[0]):
            self._index(run_id, keys[1], member, started, index[1].decode())
        if waits:
            self._check_waits(run_id, new_head, waits[0])
        return int(found)

    def _index(self, run_id: str, meta_key: str, member: bytes, started: str, old: str) -> None:
        def queue(pipe: Any) -> None:
            if old and old != started:
                pipe.zrem(self._index_key, index_member(int(old), run_id))
            pipe.zadd(self._index_key, {member: 0})
            pipe.hset(meta_key, "indexed", started)

        try:
            self._run(f"index run {run_id!r}", lambda: self._send(queue))
        except StoreUnavailable as exc:
            # The events are committed; failing the append now would invite a retry that
            # can only conflict. The run's next append with metadata indexes it again.
            _log.warning("run %r is committed but not yet listed: %s", run_id, exc)

    def _check_waits(self, run_id: str, head: int, reply: Any) -> None:
        local, replicas = (int(n) for n in reply) if self.wait_aof else (1, int(reply))
        if local < 1 or replicas < self.durable_wait:
            fsync = f", local AOF fsync {'done' if local else 'not done'}" if self.wait_aof else ""
            raise StoreUnavailable(
                f"run {run_id!r}: events up to {head} are on the primary ({self._where}) "
                f"but not durable yet: {replicas} of {self.durable_wait} replicas{fsync} "
                f"within {self._wait_ms} ms"
            )

    def read(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        events_key = self.keys_of(run_id)[0]
        left = _UNLIMITED if limit is None else limit
        out: list[StoredEvent] = []
        start = max(after, 0) + 1
        while left > 0 and start < 2**64:
            count = min(_READ_PAGE, left)
            entries = self._run(
                f"read run {run_id!r}",
                partial(self._transport.xrange, events_key, f"0-{start}", count),
            )
            out += decode_entries(run_id, entries, start)
            if len(entries) < count:
                break
            left -= count
            start = out[-1].seq + 1
        return out

    def scan(self, run_id: str, *, after: int = 0) -> Iterator[EventRow]:
        # chain flattens the pages in C: the fold's loop pays nothing per row for paging
        return chain.from_iterable(self._scan_pages(run_id, after))

    def _scan_pages(self, run_id: str, after: int) -> Iterator[list[EventRow]]:
        events_key = self.keys_of(run_id)[0]
        start = max(after, 0) + 1
        while start < 2**64:
            entries = self._run(
                f"read run {run_id!r}",
                partial(self._transport.xrange, events_key, f"0-{start}", _READ_PAGE),
            )
            rows = decode_rows(run_id, entries, start)
            if rows:
                yield rows
            if len(entries) < _READ_PAGE:
                return
            start = rows[-1][0] + 1

    def head(self, run_id: str) -> int:
        head = self._run(
            f"read the head of run {run_id!r}",
            partial(self._client.hget, self.keys_of(run_id)[1], "head"),
        )
        return 0 if head is None else int(head)

    # -- runs ----------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunMeta | None:
        meta_key = self.keys_of(run_id)[1]
        return meta_from_hash(
            self._run(f"read run {run_id!r}", partial(self._client.hgetall, meta_key))
        )

    def _index_pages(
        self, *, newest_first: bool, since: int | None = None, until: int | None = None
    ) -> Iterator[list[bytes]]:
        """Index members in start order, a page at a time, with ``since <= started < until``."""
        low = b"-" if since is None else b"[" + index_member(since, "")[:16]
        high = b"+" if until is None else b"(" + index_member(until, "")[:16]
        while True:
            if newest_first:
                fetch = partial(
                    self._client.zrevrangebylex, self._index_key, high, low, 0, _LIST_PAGE
                )
            else:
                fetch = partial(self._client.zrangebylex, self._index_key, low, high, 0, _LIST_PAGE)
            page: list[bytes] = self._run("read the run index", fetch)
            if page:
                yield page
            if len(page) < _LIST_PAGE:
                return
            if newest_first:
                high = b"(" + page[-1]
            else:
                low = b"(" + page[-1]

    def list_runs(
        self,
        *,
        flow_name: str | None = None,
        state: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
    ) -> list[RunMeta]:
        since = None if since is None or since < -INT64 else since
        until = None if until is None or until >= INT64 else until
        left = _UNLIMITED if limit is None else limit
        if left <= 0 or (since is not None and until is not None and since >= until):
            return []
        if (since is not None and since >= INT64) or (until is not None and until < -INT64):
            return []
        rows: list[RunMeta] = []
        for page in self._index_pages(newest_first=True, since=since, until=until):
            runs = [split_member(member) for member in page]
            meta_keys = [self.keys_of(run_id)[1] for _, run_id in runs]

            def queue(pipe: Any, meta_keys: list[str] = meta_keys) -> None:
                for key in meta_keys:
                    pipe.hgetall(key)

            metas = self._run("read run metadata", partial(self._send, queue))
            for (started, _), fields in zip(runs, metas, strict=True):
                meta = meta_from_hash(fields)
                # The index may lag its runs' metadata; the metadata is the truth.
                if (
                    meta is not None
                    and meta.started == started
                    and flow_name in (None, meta.flow_name)
                    and state in (None, meta.state)
                ):
                    rows.append(meta)
                    if len(rows) >= left:
                        return rows
        return rows

    def prune(self, *, before: int) -> int:
        pruned = 0
        for page in self._index_pages(newest_first=False):
            runs = [split_member(member)[1] for member in page]

            def queue(pipe: Any, runs: list[str] = runs) -> None:
                for run_id in runs:
                    pipe.execute_command(
                        "EVALSHA",
                        PRUNE.sha,
                        4,
                        *self.keys_of(run_id),
                        cancel_key(self.prefix, run_id),
                        before,
                    )

            outcomes = self._run("prune runs", partial(self._send, queue, PRUNE))
            pruned += outcomes.count(1)
            # Deleted runs and members whose run has gone leave the index.
            if gone := [m for m, o in zip(page, outcomes, strict=True) if o != 0]:
                self._run("prune the run index", partial(self._client.zrem, self._index_key, *gone))
        return pruned

    # -- leases --------------------------------------------------------------------------

    def acquire_lease(self, run_id: str, *, owner: str, ttl: float, now: int) -> Lease:
        _, meta_key, lease_key = self.keys_of(run_id)
        expires = now + int(ttl * 1e9)
        reply = self._eval(
            f"acquire the lease of run {run_id!r}",
            ACQUIRE,
            (lease_key, meta_key),
            utf8(owner),
            now,
            expires,
        )
        if int(reply[0]) == 1:
            raise LeaseHeld(
                f"run {run_id!r} is being driven by {text(reply[1])} (lease epoch {int(reply[2])})"
            )
        self._leased[run_id] = int(reply[1])
        return Lease(run_id, owner, int(reply[1]), expires)

    def _holds(self, lease: Lease | None) -> bool:
        """True when this handle acquired ``lease`` and has not released it."""
        return lease is not None and self._leased.get(lease.run_id) == lease.epoch

    def renew_lease(self, lease: Lease, *, ttl: float, now: int) -> Lease:
        expires = now + int(ttl * 1e9)
        renewed = self._eval(
            f"renew the lease of run {lease.run_id!r}",
            RENEW,
            self.keys_of(lease.run_id)[2:],
            lease.epoch,
            utf8(lease.owner),
            expires,
        )
        if not renewed:
            if self._holds(lease):
                self._check_not_vanished(lease.run_id, f"lease epoch {lease.epoch}, found none")
            raise LeaseLost(f"run {lease.run_id!r}: lease epoch {lease.epoch} was taken over")
        return Lease(lease.run_id, lease.owner, lease.epoch, expires)

    def release_lease(self, lease: Lease) -> None:
        if self._leased.get(lease.run_id) == lease.epoch:
            del self._leased[lease.run_id]
        self._eval(
            f"release the lease of run {lease.run_id!r}",
            RELEASE,
            self.keys_of(lease.run_id)[2:],
            lease.epoch,
        )

    def _check_not_vanished(self, run_id: str, what: str) -> None:
        """Raise CorruptEvent if the run's data is gone from the server.

        Called when this handle's lease holder finds its run empty. Acquiring a lease
        writes the run's meta hash and only a prune deletes it, leaving the id's last
        epoch behind; so a run leased here without a meta hash lost its data elsewhere: a server
        restarted without persistence, a flush, an eviction, a failover to a stale
        replica.
        """
        exists = self._run(
            f"check run {run_id!r}", partial(self._client.exists, self.keys_of(run_id)[1])
        )
        if not exists:
            raise CorruptEvent(
                f"run {run_id!r}: its log vanished from the server {self._where} ({what}): "
                "the server lost its data (restarted without persistence, flushed, "
                "evicted keys or failed over to a replica that lacked them); the run "
                "cannot go on from this log"
            )

    def get_lease(self, run_id: str) -> Lease | None:
        owner, epoch, expires = self._run(
            f"read the lease of run {run_id!r}",
            partial(self._client.hmget, self.keys_of(run_id)[2], ["owner", "epoch", "expires"]),
        )
        if owner is None or epoch is None or expires is None:
            return None
        return Lease(run_id, text(owner), int(epoch), int(expires))

    # -- cache ---------------------------------------------------------------------------

    def _cache_key(self, key: str) -> str:
        return cache_key(self.prefix, key)

    def cache_put(self, key: str, payload: bytes, *, expires: int) -> None:
        entry = b"%d:%s" % (expires, payload)
        deadline_ms = expires // 1_000_000 + _CACHE_GRACE_MS
        self._eval(
            f"put cache entry {key!r}", CACHE_PUT, (self._cache_key(key),), entry, deadline_ms
        )

    def cache_get(self, key: str, *, now: int) -> list[CacheEntry]:
        items: list[bytes] = self._run(
            f"get cache entry {key!r}", partial(self._client.lrange, self._cache_key(key), 0, -1)
        )
        out: list[CacheEntry] = []
        for item in items:
            stamp, _, payload = item.partition(b":")
            if int(stamp) > now:
                out.append(CacheEntry(key, payload, int(stamp)))
        return out

    # -- cancellation ----------------------------------------------------------------------

    def request_cancel(self, run_id: str, *, now: int) -> None:
        self._run(
            f"request the cancellation of run {run_id!r}",
            partial(self._client.set, cancel_key(self.prefix, run_id), now, nx=True),
        )

    def cancel_requested(self, run_id: str, *, now: int) -> bool:
        found = self._run(
            f"read the cancellation request of run {run_id!r}",
            partial(self._client.exists, cancel_key(self.prefix, run_id)),
        )
        # An older statecore kept the request as a cache entry; it still counts.
        return bool(found) or bool(self.cache_get(LEGACY_CANCEL_PREFIX + run_id, now=now))

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_client:
            self._run("close the connections", self._transport.close)
