"""The Redis store: what is particular to Redis (keys, URLs, scripts, outages, durability).

The store contract itself is checked by the shared conformance suite, subclassed below for
the real server (and for fakeredis when its Lua support is installed). Every test here
that needs the server takes the ``redis_url`` fixture: skipped without a server locally,
failed without one under ``CI=true``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

redis = pytest.importorskip("redis")

from redis.crc import key_slot  # noqa: E402

from statecore.backends.base import Lease, RunMeta  # noqa: E402
from statecore.backends.redis import RedisStore, run_tag  # noqa: E402
from statecore.errors import (  # noqa: E402
    ConcurrencyError,
    CorruptEvent,
    InvalidStoreURL,
    LeaseLost,
    StatecoreError,
    StoreUnavailable,
)
from statecore.events import StoredEvent  # noqa: E402
from statecore.testing import StoreContractTests  # noqa: E402
from tests.conftest import unique_prefix  # noqa: E402

NOW = 1_700_000_000_000_000_000
AWKWARD_IDS = [
    "plain-run-1",
    "with space",
    "a:b:c",
    'quote\'s "double"',
    "{braces}",
    "}{",
    "x}:events",
    "unicodé ∂ 漢字 🚀",
    "=looks-encoded",
    "",
    "k" * 1024,
]


def events(run_id: str, start: int, count: int, *, epoch: int = 0) -> list[StoredEvent]:
    return [
        StoredEvent(run_id, seq, epoch, b"h%d" % seq, "state", NOW + seq, b"payload-%d" % seq)
        for seq in range(start, start + count)
    ]


def meta(run_id: str, **changes: Any) -> RunMeta:
    fields: dict[str, Any] = {"flow_name": "f", "state": "Running", "started": NOW}
    fields.update(changes)
    return RunMeta(run_id, **fields)


@pytest.fixture
def raw(redis_url: str) -> Iterator[Any]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


# -- the contract ----------------------------------------------------------------------------


class TestRedisStoreContract(StoreContractTests):
    """The conformance suite on the real server; a second handle is a second client."""

    @pytest.fixture(autouse=True)
    def _server(self, redis_url: str, redis_cleanup: Callable[[str], None]) -> None:
        self.url, self.prefix = redis_url, unique_prefix()
        redis_cleanup(self.prefix)

    def make_store(self) -> RedisStore:
        return RedisStore(self.url, prefix=self.prefix, retries=1, backoff=0.01)

    def make_second_store(self) -> RedisStore:
        return self.make_store()


class TestFakeRedisStoreContract(StoreContractTests):
    """The same suite on fakeredis, for speed; it never replaces the real server's run."""

    @pytest.fixture(autouse=True)
    def _server(self) -> None:
        pytest.importorskip("lupa", reason="fakeredis runs Lua scripts only with lupa installed")
        fakeredis = pytest.importorskip("fakeredis")
        self.server = fakeredis.FakeServer()
        self.fakeredis = fakeredis

    def make_store(self) -> RedisStore:
        return RedisStore(self.fakeredis.FakeRedis(server=self.server), retries=0)

    def make_second_store(self) -> RedisStore:
        return self.make_store()


def free_port() -> int:
    """A local port that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- keys ----------------------------------------------------------------------------------


def test_every_key_of_a_run_carries_one_hash_tag(redis_store: RedisStore, raw: Any) -> None:
    for run_id in AWKWARD_IDS:
        redis_store.append(run_id, events(run_id, 1, 2), expected_seq=0, run_meta=meta(run_id))
        lease = redis_store.acquire_lease(run_id, owner="me", ttl=10, now=NOW)
        redis_store.append(run_id, events(run_id, 3, 1), expected_seq=2, lease=lease)

    tags: dict[str, str] = {}
    keys = [k.decode() for k in raw.scan_iter(match=f"{redis_store.prefix}:*")]
    run_keys = [k for k in keys if k != f"{redis_store.prefix}:runs"]
    assert len(run_keys) == 3 * len(AWKWARD_IDS)
    for key in run_keys:
        assert key.count("{") == 1 and key.count("}") == 1, key
        tag = key[key.index("{") + 1 : key.index("}")]
        assert tag, key
        tags.setdefault(tag, key)
        assert key_slot(key.encode()) == key_slot(tags[tag].encode())
    assert sorted(tags) == sorted(run_tag(r) for r in AWKWARD_IDS)

    for run_id in AWKWARD_IDS:
        assert [e.run_id for e in redis_store.read(run_id)] == [run_id] * 3
        got = redis_store.get_run(run_id)
        assert got is not None and got.run_id == run_id and got.head == 3
    assert {m.run_id for m in redis_store.list_runs()} == set(AWKWARD_IDS)


def test_readable_run_ids_stay_readable() -> None:
    assert run_tag("run-42") == "run-42"
    assert run_tag("2024-01-01T00:00:00@host") == "2024-01-01T00:00:00@host"
    for run_id in ("a}b", "a b", "", "é", "=x", "k" * 129):
        tag = run_tag(run_id)
        assert tag.startswith("=") and "{" not in tag and "}" not in tag


@given(st.text(), st.text())
def test_run_tags_are_one_to_one_and_brace_free(a: str, b: str) -> None:
    assert "{" not in run_tag(a) and "}" not in run_tag(a)
    assert (run_tag(a) == run_tag(b)) == (a == b)


def test_prefix_isolates_two_stores_on_one_server(
    redis_url: str, redis_cleanup: Callable[[str], None]
) -> None:
    one, two = unique_prefix(), unique_prefix()
    redis_cleanup(one)
    redis_cleanup(two)
    with RedisStore(redis_url, prefix=one) as a, RedisStore(redis_url, prefix=two) as b:
        a.append("run", events("run", 1, 2), expected_seq=0, run_meta=meta("run", ended=NOW))
        a.cache_put("key", b"a's", expires=NOW + 10)
        assert b.head("run") == 0 and b.get_run("run") is None and b.list_runs() == []
        assert b.cache_get("key", now=NOW) == []
        b.append("run", events("run", 1, 1), expected_seq=0, run_meta=meta("run", ended=NOW))
        assert b.prune(before=NOW + 1) == 1
        assert a.head("run") == 2 and [m.run_id for m in a.list_runs()] == ["run"]


def test_prefix_with_braces_is_refused(redis_url: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        RedisStore(redis_url, prefix="app{1}")


# -- the append script ---------------------------------------------------------------------


def test_a_stale_lease_holder_is_fenced_off_by_the_script(redis_store: RedisStore) -> None:
    run = "fenced"
    old = redis_store.acquire_lease(run, owner="old", ttl=1, now=NOW)
    redis_store.append(run, events(run, 1, 1, epoch=old.epoch), expected_seq=0, lease=old)
    # The old driver stalls past its lease; a new one takes over with the next epoch.
    new = redis_store.acquire_lease(run, owner="new", ttl=10, now=NOW + 2 * 10**9)
    assert new.epoch == old.epoch + 1
    with pytest.raises(LeaseLost, match="epoch 1"):
        redis_store.append(
            run, events(run, 2, 1, epoch=old.epoch), expected_seq=1, lease=old, run_meta=meta(run)
        )
    assert redis_store.head(run) == 1 and redis_store.get_run(run) is None
    assert redis_store.append(run, events(run, 2, 1, epoch=new.epoch), expected_seq=1, lease=new)
    with pytest.raises(LeaseLost):
        redis_store.renew_lease(old, ttl=10, now=NOW + 3 * 10**9)


def test_a_big_batch_is_one_atomic_append(redis_store: RedisStore) -> None:
    batch = events("big", 1, 5_000)
    assert redis_store.append("big", batch, expected_seq=0) == 5_000
    assert redis_store.read("big") == batch
    assert redis_store.read("big", after=998, limit=1_500) == batch[998:2_498]
    broken = [*events("big", 5_001, 2_000), *events("big", 7_002, 1)]
    with pytest.raises(ConcurrencyError, match="numbered 7002 where 7001"):
        redis_store.append("big", broken, expected_seq=5_000)
    assert redis_store.head("big") == 5_000 and len(redis_store.read("big")) == 5_000


def test_awkward_event_fields_land_whole_in_the_stream_s_own_layout(
    redis_store: RedisStore, raw: Any
) -> None:
    # the script cuts each batch's fields out of one argument by their lengths: fields
    # holding digits and commas, empty ones, negative and huge numbers, non-UTF-8 text
    # and a long payload must come back whole, in the layout entries always had
    awkward = [
        StoredEvent("odd", 1, 0, b"", "state", 0, b""),
        StoredEvent("odd", 2, 7, b"1,2,3", "k\u00e9nd \udcff", -5, b"9,9,9,9,9" * 3),
        StoredEvent("odd", 3, 2**62, b"\x00" * 16, "", NOW, bytes(range(256)) * 400),
        StoredEvent("odd", 4, 1, b"h", "log", 2**63 - 1, b"%d" % 10**30),
    ]
    assert redis_store.append("odd", awkward, expected_seq=0) == 4
    assert redis_store.read("odd") == awkward
    key = redis_store.keys_of("odd")[0]
    entries = raw.xrange(key)
    assert [entry_id for entry_id, _ in entries] == [b"0-1", b"0-2", b"0-3", b"0-4"]
    assert entries[1][1] == {
        b"e": b"7",
        b"h": b"1,2,3",
        b"k": "k\u00e9nd \udcff".encode("utf-8", "surrogatepass"),
        b"t": b"-5",
        b"p": b"9,9,9,9,9" * 3,
    }


def test_scripts_are_reloaded_after_the_server_forgets_them(
    redis_store: RedisStore, raw: Any
) -> None:
    redis_store.append("r", events("r", 1, 1), expected_seq=0)
    raw.script_flush()
    assert redis_store.append("r", events("r", 2, 1), expected_seq=1) == 2
    raw.script_flush()
    assert redis_store.acquire_lease("r", owner="me", ttl=1, now=NOW).epoch == 1


def test_an_append_whose_reply_was_lost_is_recognised(
    redis_store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_send = redis_store._send
    calls = 0

    def lose_first_reply(*args: Any, **kwargs: Any) -> list[Any]:
        nonlocal calls
        calls += 1
        replies = real_send(*args, **kwargs)
        if calls == 1:
            raise redis.ConnectionError("connection reset after the script ran")
        return replies

    monkeypatch.setattr(redis_store, "_send", lose_first_reply)
    assert redis_store.append("r", events("r", 1, 3), expected_seq=0, run_meta=meta("r")) == 3
    assert calls == 3 and redis_store.head("r") == 3  # lost, retried, then the index
    assert [m.run_id for m in redis_store.list_runs()] == ["r"]


def test_an_unindexed_run_is_indexed_by_its_next_append(redis_store: RedisStore, raw: Any) -> None:
    redis_store.append("r", events("r", 1, 1), expected_seq=0, run_meta=meta("r"))
    # As if the process died between the script and the index update:
    raw.delete(f"{redis_store.prefix}:runs")
    raw.hdel(redis_store.keys_of("r")[1], "indexed")
    assert redis_store.list_runs() == []
    redis_store.append("r", events("r", 2, 1), expected_seq=1, run_meta=meta("r"))
    assert [m.head for m in redis_store.list_runs()] == [2]


def test_an_append_whose_index_update_fails_still_succeeds(
    redis_store: RedisStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_send = redis_store._send

    def index_down(queue: Any, *scripts: Any, key: str | None = None) -> list[Any]:
        if not scripts:  # the index update is the one pipeline without a script
            raise redis.ConnectionError("down")
        return real_send(queue, *scripts, key=key)

    monkeypatch.setattr(redis_store, "_send", index_down)
    assert redis_store.append("r", events("r", 1, 1), expected_seq=0, run_meta=meta("r")) == 1
    assert "committed but not yet listed" in caplog.text
    monkeypatch.undo()
    assert redis_store.list_runs() == []
    redis_store.append("r", events("r", 2, 1), expected_seq=1, run_meta=meta("r"))
    assert [m.head for m in redis_store.list_runs()] == [2]


def test_a_moved_start_time_moves_the_run_in_the_index(redis_store: RedisStore) -> None:
    redis_store.append("r", [], expected_seq=0, run_meta=meta("r", started=NOW))
    redis_store.append("r", [], expected_seq=0, run_meta=meta("r", started=NOW + 5))
    assert [m.started for m in redis_store.list_runs()] == [NOW + 5]
    assert redis_store.list_runs(until=NOW + 5) == []


def test_a_corrupt_entry_is_named_and_the_rest_stays_readable(
    redis_store: RedisStore, raw: Any
) -> None:
    redis_store.append("r", events("r", 1, 2), expected_seq=0)
    raw.xadd(redis_store.keys_of("r")[0], {"junk": "1"}, id="0-3")
    raw.hset(redis_store.keys_of("r")[1], "head", 3)
    redis_store.append("r", events("r", 4, 1), expected_seq=3)
    with pytest.raises(CorruptEvent, match=r"run 'r', stream entry b'0-3'"):
        redis_store.read("r")
    assert [e.seq for e in redis_store.read("r", limit=2)] == [1, 2]
    assert [e.seq for e in redis_store.read("r", after=3)] == [4]


def test_a_stream_out_of_step_with_its_head_is_not_appended_to(
    redis_store: RedisStore, raw: Any
) -> None:
    redis_store.append("r", events("r", 1, 2), expected_seq=0)
    raw.hset(redis_store.keys_of("r")[1], "head", 1)
    with pytest.raises(CorruptEvent, match="nothing was appended"):
        redis_store.append("r", events("r", 2, 1), expected_seq=1)
    assert len(redis_store.read("r")) == 2


def test_a_client_that_decodes_responses_is_refused(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses=False"):
        RedisStore(client)
    client.close()


def test_a_client_built_elsewhere_is_used_and_not_closed(
    redis_url: str, redis_cleanup: Callable[[str], None]
) -> None:
    prefix = unique_prefix()
    redis_cleanup(prefix)
    client = redis.Redis.from_url(redis_url)
    store = RedisStore(client, prefix=prefix)
    assert store.url.startswith("redis://") and ":" in store.url
    store.append("r", events("r", 1, 1), expected_seq=0)
    store.close()
    assert client.ping()
    client.close()


# -- outages -------------------------------------------------------------------------------


def test_an_unreachable_server_is_store_unavailable_naming_the_host() -> None:
    port = free_port()
    store = RedisStore(f"redis://127.0.0.1:{port}/0", retries=2, backoff=0.001)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=rf"127\.0\.0\.1:{port}.*3 attempts") as caught:
        store.append("r", events("r", 1, 1), expected_seq=0)
    assert time.monotonic() - started < 5
    assert not isinstance(caught.value, redis.RedisError)


def test_a_missing_socket_is_store_unavailable_naming_the_path(tmp_path: Any) -> None:
    path = tmp_path / "no-redis.sock"
    store = RedisStore(f"unix://{path}?db=2", retries=0)
    with pytest.raises(StoreUnavailable, match=str(path)):
        store.head("r")


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.append("r", events("r", 1, 1), expected_seq=0, run_meta=meta("r")),
        lambda s: s.read("r"),
        lambda s: s.head("r"),
        lambda s: s.get_run("r"),
        lambda s: s.list_runs(flow_name="f"),
        lambda s: s.prune(before=NOW),
        lambda s: s.acquire_lease("r", owner="me", ttl=1, now=NOW),
        lambda s: s.renew_lease(Lease("r", "me", 1, NOW), ttl=1, now=NOW),
        lambda s: s.release_lease(Lease("r", "me", 1, NOW)),
        lambda s: s.get_lease("r"),
        lambda s: s.cache_put("k", b"v", expires=NOW),
        lambda s: s.cache_get("k", now=NOW),
        lambda s: s.request_cancel("r", now=NOW),
    ],
)
def test_no_redis_exception_leaks(call: Callable[[RedisStore], object]) -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}", retries=0)
    with pytest.raises(StoreUnavailable):
        call(store)


# -- durability options --------------------------------------------------------------------


def test_waitaof_is_refused_clearly_where_the_server_lacks_it(redis_url: str, raw: Any) -> None:
    version = raw.info("server")["redis_version"]
    if tuple(int(p) for p in version.split(".")[:2]) >= (7, 2):
        if str(raw.info("persistence")["aof_enabled"]) == "1":
            # a server that has WAITAOF, with AOF on: the option is accepted
            assert RedisStore(redis_url, wait_aof=True) is not None
            return
        with pytest.raises(StatecoreError, match="appendonly no"):
            RedisStore(redis_url, wait_aof=True)
        return
    with pytest.raises(StatecoreError, match=rf"WAITAOF.*{version}.*7\.2"):
        RedisStore(redis_url, wait_aof=True)
    with pytest.raises(StatecoreError, match="WAITAOF"):
        RedisStore.from_url(redis_url + "?wait_aof=yes")


def test_wait_without_enough_replicas_says_the_events_are_not_durable(
    redis_url: str, redis_cleanup: Callable[[str], None], raw: Any
) -> None:
    replicas = int(raw.info("replication")["connected_slaves"])
    prefix = unique_prefix()
    redis_cleanup(prefix)
    store = RedisStore(redis_url, prefix=prefix, durable_wait=replicas + 1, wait_timeout=0.01)
    with pytest.raises(StoreUnavailable, match=rf"on the primary.*{replicas} of {replicas + 1}"):
        store.append("r", events("r", 1, 1), expected_seq=0)
    assert store.head("r") == 1  # on the primary, just not yet on enough replicas
    if replicas == 0:
        zero = RedisStore(redis_url, prefix=prefix, durable_wait=0)
        assert zero.append("r", events("r", 2, 1), expected_seq=1) == 2


# -- URLs ----------------------------------------------------------------------------------


def connection(store: RedisStore) -> dict[str, Any]:
    kwargs: dict[str, Any] = store._client.connection_pool.connection_kwargs
    return kwargs


def test_redis_url_with_user_password_db_and_options() -> None:
    store = RedisStore.from_url(
        "redis://app:s%40cret@cache.example:6380/3?prefix=myapp&wait=1&retries=2&backoff=0.5"
    )
    kwargs = connection(store)
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.example", 6380, 3)
    assert (kwargs["username"], kwargs["password"]) == ("app", "s@cret")
    assert (store.prefix, store.durable_wait, store.retries, store.backoff) == ("myapp", 1, 2, 0.5)
    assert "s%40cret" not in store.url and "***" in store.url
    assert "s@cret" not in repr(store)


def test_rediss_url_uses_tls_and_a_password_without_user() -> None:
    store = RedisStore.from_url("rediss://:pw@secure.example/0?ssl_cert_reqs=none")
    kwargs = connection(store)
    assert "SSL" in store._client.connection_pool.connection_class.__name__
    assert (kwargs["host"], kwargs["port"], kwargs["password"]) == ("secure.example", 6379, "pw")
    assert kwargs.get("ssl_cert_reqs") == "none"


def test_unix_url_with_password_and_db() -> None:
    store = RedisStore.from_url("unix://:pw@/run/redis/redis.sock?db=4&prefix=p")
    kwargs = connection(store)
    assert (kwargs["path"], kwargs["db"], kwargs["password"]) == ("/run/redis/redis.sock", 4, "pw")
    assert store.prefix == "p"


def test_a_password_in_the_query_is_masked_too() -> None:
    store = RedisStore.from_url("unix:///tmp/r.sock?password=hunter2&db=1")
    assert connection(store)["password"] == "hunter2"
    assert "hunter2" not in store.url and "hunter2" not in repr(store)


def test_url_defaults() -> None:
    kwargs = connection(RedisStore.from_url("redis://"))
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("localhost", 6379, 0)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis://host:port/0", "could not be cast to integer"),
        ("redis://host:99999/0", "Port out of range"),
        ("redis://host/notadb", "database must be a number"),
        ("redis://host/1/2", "database must be a number"),
        ("redis://host/1?db=2", "given once"),
        ("redis://host/?wait=many", "wait"),
        ("redis://host/?wait_aof=perhaps", "yes/no"),
        ("redis://host/?colour=blue", "unknown option 'colour'"),
        ("redis://host/?ssl_ca_certs=/x", "unknown option 'ssl_ca_certs'"),
        ("redis://host/?prefix=a{b}", "prefix"),
        ("unix://", "socket path is missing"),
        ("unix://host/sock", "takes no host"),
        ("http://host/0", "not redis, rediss or unix"),
        ("redis://host/0#frag", "fragment"),
    ],
)
def test_malformed_urls_are_refused_clearly(url: str, why: str) -> None:
    with pytest.raises((InvalidStoreURL, ValueError), match=why) as caught:
        RedisStore.from_url(url)
    assert isinstance(caught.value, ValueError)


def test_malformed_urls_are_statecore_errors() -> None:
    with pytest.raises(InvalidStoreURL, match=r"redis://\[\[user\]:password@\]host"):
        RedisStore.from_url("redis://:pw@host/x")
    with pytest.raises(InvalidStoreURL) as caught:
        RedisStore.from_url("redis://:hunter2@host/x")
    assert "hunter2" not in str(caught.value)


def test_an_option_in_both_url_and_argument_must_agree() -> None:
    assert RedisStore("redis://h/0?prefix=a", prefix="a").prefix == "a"
    with pytest.raises(InvalidStoreURL, match="prefix"):
        RedisStore("redis://h/0?prefix=a", prefix="b")
