"""The Redis store on a real Redis Cluster (3 primaries; ``.ci/redis-cluster`` starts one).

The store contract and the differential state machine, unchanged; a flow run end to end and
replayed; where a run's keys land; WAIT on the run's own node; redirections while a slot
moves; cluster URLs; and cluster errors at the store's boundary. Every test that needs the
cluster takes ``redis_cluster_url``: skipped without a cluster locally, failed under
``CI=true``. A cluster has only database 0, so each test keeps to a key prefix of its own.
"""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

redis = pytest.importorskip("redis")

from redis import exceptions as rx  # noqa: E402
from redis.backoff import NoBackoff  # noqa: E402
from redis.cluster import RedisCluster  # noqa: E402
from redis.crc import key_slot  # noqa: E402
from redis.retry import Retry  # noqa: E402

from statecore.backends import MemoryStore, Store, open_store  # noqa: E402
from statecore.backends._redis_scripts import (  # noqa: E402
    ACQUIRE,
    APPEND,
    CACHE_PUT,
    PRUNE,
    RELEASE,
    RENEW,
)
from statecore.backends._redis_url import parse_url  # noqa: E402
from statecore.backends.redis import RedisStore  # noqa: E402
from statecore.errors import InvalidStoreURL, StatecoreError, StoreUnavailable  # noqa: E402
from statecore.runners import LocalRunner  # noqa: E402
from statecore.states import Mapped  # noqa: E402
from statecore.testing import StoreContractTests, store_state_machine  # noqa: E402
from tests.conftest import cluster_client, unique_prefix  # noqa: E402
from tests.runners.test_end_to_end import RUNNER, SQUARES, assert_replay_equals, e2e_flow  # noqa: E402
from tests.stores.test_store_redis import events, meta  # noqa: E402

NOW = 1_700_000_000_000_000_000


def with_options(url: str, **options: object) -> str:
    """``url`` with ``options`` added to its query string."""
    query = "&".join(f"{name}={value}" for name, value in options.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def admin(redis_cluster_admin: RedisCluster[bytes]) -> RedisCluster[bytes]:
    """A plain redis-py cluster client, to look at what the store wrote."""
    return redis_cluster_admin


@pytest.fixture
def prefix(redis_cluster_cleanup: Callable[[str], None]) -> str:
    prefix = unique_prefix()
    redis_cluster_cleanup(prefix)
    return prefix


@pytest.fixture
def cluster_store(redis_cluster_url: str, prefix: str) -> Iterator[RedisStore]:
    store = RedisStore(redis_cluster_url, prefix=prefix, retries=2, backoff=0.01)
    yield store
    store.close()


# -- the contract ----------------------------------------------------------------------------


class TestRedisClusterStoreContract(StoreContractTests):
    """The conformance suite on the cluster. The first handle comes from the URL; the
    second from a ``RedisCluster`` client built by the caller, as another process would."""

    @pytest.fixture(autouse=True)
    def _cluster(
        self, redis_cluster_url: str, redis_cluster_cleanup: Callable[[str], None]
    ) -> Iterator[None]:
        self.url, self.prefix = redis_cluster_url, unique_prefix()
        redis_cluster_cleanup(self.prefix)
        self.clients: list[RedisCluster[bytes]] = []
        yield
        for client in self.clients:
            client.close()

    def make_store(self) -> RedisStore:
        return RedisStore(self.url, prefix=self.prefix, retries=1, backoff=0.01)

    def make_second_store(self) -> RedisStore:
        host, port = parse_url(self.url).cluster_nodes[0]
        client: RedisCluster[bytes] = RedisCluster(host, port, retry=Retry(NoBackoff(), 0))
        self.clients.append(client)
        return RedisStore(client, prefix=self.prefix, retries=1, backoff=0.01)


def test_the_cluster_store_agrees_with_the_reference(
    redis_cluster_url: str, redis_cluster_cleanup: Callable[[str], None]
) -> None:
    def make_stores() -> list[Store]:
        prefix = unique_prefix()
        redis_cluster_cleanup(prefix)
        store = RedisStore(redis_cluster_url, prefix=prefix, retries=1, backoff=0.01)
        return [MemoryStore(), store]

    # Fewer examples than the all-stores machine: this one is about the cluster's routing.
    run_state_machine_as_test(  # type: ignore[no-untyped-call]
        store_state_machine(make_stores),
        settings=settings(
            max_examples=5,
            stateful_step_count=20,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# -- a flow, end to end ----------------------------------------------------------------------


def test_a_flow_runs_on_the_cluster_and_replays_equal(redis_cluster_url: str, prefix: str) -> None:
    store = open_store(with_options(redis_cluster_url, prefix=prefix))
    try:
        assert isinstance(store, RedisStore) and store.cluster
        state = e2e_flow.run(store=store, runner=LocalRunner(**RUNNER))
        assert state.is_successful()
        squares = state.result[SQUARES]
        assert isinstance(squares, Mapped) and len(squares.map_states) == 4
        assert_replay_equals(store, state)
        listed = store.list_runs()
        assert [(m.run_id, m.flow_name, m.state) for m in listed] == [
            (state.run_id, "e2e", "Success")
        ]
        assert listed[0].head == store.head(state.run_id) > 10
        lease = store.get_lease(state.run_id)
        assert lease is not None and lease.expires == 0  # released when the run ended
    finally:
        store.close()
    with open_store(with_options(redis_cluster_url, prefix=prefix)) as again:
        assert_replay_equals(again, state)  # a fresh client, as another process


# -- where keys land -------------------------------------------------------------------------

# Fixed ids, so the slots (CRC16 of the hash tag) and so the spread are the same every time.
SPREAD_IDS = [f"spread-{i}" for i in range(24)] + ["with space", "{braces}", "unicodé 漢字"]


def test_each_runs_keys_share_one_slot_and_runs_spread_over_the_primaries(
    cluster_store: RedisStore, admin: RedisCluster[bytes]
) -> None:
    for run_id in SPREAD_IDS:
        cluster_store.append(run_id, events(run_id, 1, 2), expected_seq=0, run_meta=meta(run_id))
        cluster_store.acquire_lease(run_id, owner="me", ttl=10, now=NOW)
        cluster_store.cache_put(run_id, b"cached", expires=NOW + 10**9)

    node_of_key: dict[str, str] = {}
    for node in admin.get_primaries():
        for key in admin.scan_iter(match=f"{cluster_store.prefix}:*", target_nodes=node):
            node_of_key[key.decode()] = node.name
    index = f"{cluster_store.prefix}:runs"
    assert index in node_of_key  # the run index: one key, on one node

    nodes_of_runs: set[str] = set()
    slots_of_runs: set[int] = set()
    for run_id in SPREAD_IDS:
        keys = [*cluster_store.keys_of(run_id), cluster_store._cache_key(run_id)]
        # All four keys exist, in one slot, on the one primary that serves that slot.
        assert {key_slot(k.encode()) for k in keys} == {key_slot(keys[0].encode())}, run_id
        assert {node_of_key.get(k) for k in keys} == {admin.get_node_from_key(keys[0]).name}
        nodes_of_runs.add(node_of_key[keys[0]])
        slots_of_runs.add(key_slot(keys[0].encode()))
    assert len(node_of_key) == 4 * len(SPREAD_IDS) + 1
    # Runs are spread over the cluster, not pinned to one slot by a shared tag.
    assert nodes_of_runs == {node.name for node in admin.get_primaries()}
    assert len(slots_of_runs) > len(SPREAD_IDS) // 2
    assert sorted(m.run_id for m in cluster_store.list_runs()) == sorted(SPREAD_IDS)


def test_scripts_touch_only_the_keys_they_are_given() -> None:
    # Redis Cluster routes a script by its declared KEYS; a key named inside the script
    # could live on another node.
    for script in (APPEND, ACQUIRE, RENEW, RELEASE, PRUNE, CACHE_PUT):
        calls = re.findall(r"redis\.call\('(\w+)'(?:,\s*([^,)]+))?", script.source)
        assert calls, script.source
        for command, first in calls:
            if command != "TIME":  # the one keyless command they use
                assert first.startswith("KEYS["), (command, first, script.source)
        for args in re.findall(r"redis\.call\('DEL', ([^)]*)\)", script.source):
            assert all(arg.strip().startswith("KEYS[") for arg in args.split(",")), args


# -- WAIT, scripts, durability options --------------------------------------------------------


def wait_calls(admin: RedisCluster[bytes]) -> dict[str, int]:
    """How many WAIT commands each primary has run."""
    calls = {}
    for node in admin.get_primaries():
        stats = admin.info("commandstats", target_nodes=node)
        calls[node.name] = int(stats.get("cmdstat_wait", {}).get("calls", 0))
    return calls


def test_wait_runs_on_the_runs_own_primary(
    redis_cluster_url: str, prefix: str, admin: RedisCluster[bytes]
) -> None:
    store = RedisStore(redis_cluster_url, prefix=prefix, durable_wait=1, wait_timeout=0.01)
    try:
        for run_id in ("wait-a", "wait-b", "wait-c", "wait-d"):
            owner = admin.get_node_from_key(store.keys_of(run_id)[0]).name
            before = wait_calls(admin)
            # The test cluster has no replicas: WAIT 1 times out, and says so.
            with pytest.raises(StoreUnavailable, match=r"on the primary.*0 of 1 replicas"):
                store.append(run_id, events(run_id, 1, 1), expected_seq=0)
            after = wait_calls(admin)
            assert {n: after[n] - before[n] for n in after} == {
                n: int(n == owner) for n in after
            }, run_id
            assert store.head(run_id) == 1  # on the primary, just not on a replica
    finally:
        store.close()


def test_wait_aof_is_checked_on_every_primary(redis_cluster_url: str, prefix: str) -> None:
    # .ci/redis-cluster starts its nodes with appendonly no: a server older than 7.2 lacks
    # WAITAOF, a newer one lacks the append-only file; either way a node is named
    why = "WAITAOF" if parse_version(redis_cluster_url) < (7, 2) else "appendonly no"
    with pytest.raises(StatecoreError, match=rf"{why}.*node 127\.0\.0\.1|node 127\.0\.0\.1.*{why}"):
        RedisStore(redis_cluster_url, prefix=prefix, wait_aof=True)


def parse_version(url: str) -> tuple[int, ...]:
    client = cluster_client(url)
    try:
        version = str(
            client.info("server", target_nodes=client.get_primaries()[0])["redis_version"]
        )
    finally:
        client.close()
    return tuple(int(part) for part in version.split(".")[:2])


def test_scripts_are_loaded_again_on_every_node(
    cluster_store: RedisStore, admin: RedisCluster[bytes]
) -> None:
    for run_id in SPREAD_IDS[:9]:
        cluster_store.append(
            run_id, events(run_id, 1, 1), expected_seq=0, run_meta=meta(run_id, ended=NOW)
        )
    admin.script_flush()  # on every primary
    assert cluster_store.append("fresh", events("fresh", 1, 1), expected_seq=0) == 1
    admin.script_flush()  # on every primary
    # A pipeline across all three nodes, each of which has forgotten the script.
    assert cluster_store.prune(before=NOW + 1) == 9
    assert cluster_store.list_runs() == []
    admin.script_flush()  # on every primary
    assert cluster_store.acquire_lease("fresh", owner="me", ttl=1, now=NOW).epoch == 1


# -- redirections ----------------------------------------------------------------------------


class SlotMover:
    """Moves one empty slot between primaries the way ``redis-cli --cluster reshard`` does."""

    def __init__(self, admin: RedisCluster[bytes], slot: int) -> None:
        self.admin, self.slot = admin, slot
        self.ids = {n.name: admin.cluster_myid(n).decode() for n in admin.get_primaries()}

    def setslot(self, node: str, *args: object) -> None:
        target = self.admin.get_node(node_name=node)
        self.admin.execute_command("CLUSTER SETSLOT", self.slot, *args, target_nodes=target)

    def begin(self, source: str, target: str) -> None:
        self.setslot(target, "IMPORTING", self.ids[source])
        self.setslot(source, "MIGRATING", self.ids[target])

    def finish(self, target: str) -> None:
        # The new owner first: it bumps its config epoch, so the cluster agrees on it.
        self.setslot(target, "NODE", self.ids[target])
        for node in self.ids:
            if node != target:
                self.setslot(node, "NODE", self.ids[target])


def test_a_store_follows_a_slot_that_moves_under_it(
    cluster_store: RedisStore, admin: RedisCluster[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = f"moving-{uuid.uuid4().hex[:8]}"
    events_key = cluster_store.keys_of(run_id)[0]
    slot = key_slot(events_key.encode())
    source = admin.get_node_from_key(events_key).name
    target = next(n.name for n in admin.get_primaries() if n.name != source)
    mover = SlotMover(admin, slot)
    assert admin.cluster_countkeysinslot(slot) == 0  # a fresh run's slot holds nothing else
    try:
        mover.begin(source, target)
        # Migrating: a key the source does not have is served by the target (ASK)...
        cluster_store.cache_put(run_id, b"asked", expires=NOW + 10**9)
        assert [e.payload for e in cluster_store.cache_get(run_id, now=NOW)] == [b"asked"]
        # ...but a script on several missing keys must wait for the move (TRYAGAIN).
        with pytest.raises(StoreUnavailable, match="TryAgainError"):
            cluster_store.append(run_id, events(run_id, 1, 1), expected_seq=0)
        mover.finish(target)

        # The store still thinks the source owns the slot: MOVED, followed.
        assert cluster_store.append(run_id, events(run_id, 1, 2), expected_seq=0) == 2
        assert cluster_store.read(run_id) == events(run_id, 1, 2)
        on_target = admin.get_redis_connection(admin.get_node(node_name=target))
        assert on_target.exists(events_key) == 1  # the target answers for it, no MOVED

        # Nodes that keep disagreeing exhaust the redirections: StoreUnavailable, no leak.
        stale = RedisStore(cluster_store.url, prefix=cluster_store.prefix, retries=1)
        monkeypatch.setattr(stale._client.nodes_manager, "move_slot", lambda exc: None)
        stale._client.nodes_manager.slots_cache[slot] = [admin.get_node(node_name=source)]
        with pytest.raises(StoreUnavailable, match=r"Redis Cluster at .*redirected 5 times"):
            stale.append(run_id, events(run_id, 3, 1), expected_seq=2)
        stale.close()
    finally:
        admin.delete(*cluster_store.keys_of(run_id))  # one slot: one DEL
        admin.delete(cluster_store._cache_key(run_id))
        for node in mover.ids:
            mover.setslot(node, "STABLE")
        owner = admin.get_node_from_key(events_key).name
        if owner != source:  # give the emptied slot back
            mover.begin(owner, source)
            mover.finish(source)
    assert cluster_store.head(run_id) == 0


# -- URLs ------------------------------------------------------------------------------------


def test_cluster_urls_parse_into_startup_nodes() -> None:
    parsed = parse_url(
        "rediss://app:pw@node-a.example:7000?cluster=yes&node=node-b.example:7001"
        "&node=[::1]:7002&prefix=p&wait=1"
    )
    assert parsed.cluster_nodes == (
        ("node-a.example", 7000),
        ("node-b.example", 7001),
        ("::1", 7002),
    )
    assert parsed.connection["ssl"] is True and parsed.connection["password"] == "pw"
    assert "db" not in parsed.connection and "host" not in parsed.connection
    assert parsed.options == {"prefix": "p", "durable_wait": 1}
    assert parsed.where == "Redis Cluster at node-a.example:7000, node-b.example:7001, ::1:7002"
    assert "pw" not in parsed.display
    assert parse_url("redis://h:7000/0?cluster=yes").cluster_nodes == (("h", 7000),)
    assert parse_url("redis://h:7000/3?cluster=no").cluster_nodes == ()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis://h:7000/1?cluster=yes", "only database 0"),
        ("redis://h:7000?cluster=yes&db=2", "only database 0"),
        ("unix:///run/redis.sock?cluster=yes", r"over TCP \(redis:// or rediss://\)"),
        ("redis://h:7000?node=h2:7001", "add cluster=yes"),
        ("redis://h:7000?cluster=yes&node=h2", "startup node is host:port"),
        ("redis://h:7000?cluster=yes&node=h2:99999", "startup node is host:port"),
        ("redis://h:7000?cluster=perhaps", "yes/no"),
        ("redis://h:7000?cluster=yes&cluster=no", "cluster is given twice"),
    ],
)
def test_malformed_cluster_urls_are_refused_clearly(url: str, why: str) -> None:
    with pytest.raises(InvalidStoreURL, match=why) as caught:
        open_store(url)
    assert "cluster=yes" in str(caught.value)  # the message shows the cluster form


def test_an_unreachable_cluster_is_store_unavailable_naming_its_nodes() -> None:
    one, two = free_port(), free_port()
    url = f"redis://127.0.0.1:{one}/0?cluster=yes&node=127.0.0.1:{two}&retries=1&backoff=0.001"
    with pytest.raises(StoreUnavailable) as caught:
        open_store(url)
    message = str(caught.value)
    assert f"127.0.0.1:{one}, 127.0.0.1:{two}" in message and "2 attempts" in message
    assert not isinstance(caught.value, (rx.RedisError, rx.RedisClusterException))


@pytest.mark.parametrize(
    "error",
    [
        rx.ClusterDownError("CLUSTERDOWN The cluster is down"),
        rx.MasterDownError("MASTERDOWN Link with MASTER is down"),
        rx.ClusterError("TTL exhausted."),
        rx.TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"),
        rx.SlotNotCoveredError('Slot "42" is not covered by the cluster.'),
        rx.RedisClusterException("Redis Cluster cannot be connected."),
        rx.MovedError("42 127.0.0.1:7002"),
        rx.AskError("42 127.0.0.1:7002"),
        rx.ClusterCrossSlotError(),
    ],
    ids=type,
)
def test_cluster_errors_become_store_unavailable_naming_the_cluster(
    cluster_store: RedisStore, error: Exception
) -> None:
    def fail() -> None:
        raise error

    with pytest.raises(StoreUnavailable, match=r"^Redis Cluster at 127\.0\.0\.1:\d+ ") as caught:
        cluster_store._run("do what was asked", fail)
    assert caught.value.__cause__ is error


# -- clients built elsewhere ------------------------------------------------------------------


def test_a_cluster_client_built_elsewhere_is_used_and_not_closed(
    redis_cluster_url: str, prefix: str
) -> None:
    client = cluster_client(redis_cluster_url)
    store = RedisStore(client, prefix=prefix)
    assert store.cluster and store.url.endswith("/0?cluster=yes")
    assert re.fullmatch(r"Redis Cluster at (127\.0\.0\.1:\d+, ){2}127\.0\.0\.1:\d+", store._where)
    store.append("r", events("r", 1, 1), expected_seq=0)
    store.close()
    assert client.ping() and client.exists(store.keys_of("r")[0]) == 1
    client.close()


def test_a_cluster_client_that_decodes_responses_is_refused(redis_cluster_url: str) -> None:
    host, port = parse_url(redis_cluster_url).cluster_nodes[0]
    client: RedisCluster[str] = RedisCluster(host, port, decode_responses=True)
    try:
        with pytest.raises(ValueError, match="decode_responses=False"):
            RedisStore(client)  # type: ignore[arg-type]
    finally:
        client.close()
