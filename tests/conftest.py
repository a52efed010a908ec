"""Shared fixtures: a real Redis server and a real Redis Cluster for the store tests.

``redis_url`` is the server at ``STATECORE_TEST_REDIS_URL`` (default
``redis://127.0.0.1:6379/15``). When it cannot be reached the test is skipped with the
reason, except under CI (``CI=true``), where every Redis test must run and so fails.

``redis_cluster_url`` is the cluster at ``STATECORE_TEST_REDIS_CLUSTER_URL`` (default
``redis://127.0.0.1:7000/0?cluster=yes``; ``.ci/redis-cluster`` starts one), skipped or
failed the same way. A cluster has only database 0, so cluster tests keep to key prefixes
of their own (``redis_cluster_cleanup``) and never flush.

``redis_store`` is a :class:`~statecore.backends.redis.RedisStore` on that server with a
prefix of its own; ``redis_cleanup`` deletes every key under a prefix after the test.
``redis_store_factories()`` is for tables of store factories built at import time (the
differential state machine): the Redis entry, or nothing when there is no server locally.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import pytest

from statecore.backends.memory import MemoryStore
from statecore.backends.sqlite import SQLiteStore

if TYPE_CHECKING:
    from redis.cluster import RedisCluster

    from statecore.backends.base import Store
    from statecore.backends.redis import RedisStore

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
DEFAULT_REDIS_CLUSTER_URL = "redis://127.0.0.1:7000/0?cluster=yes"

_reachable: dict[str, str | None] = {}  # url -> None when reachable, else the reason


def _probe(url: str) -> str | None:
    try:
        import redis
    except ImportError as exc:
        return f"redis-py is not installed ({exc}); pip install 'statecore[redis]'"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return f"no Redis server at {url} ({type(exc).__name__}: {exc})"
    return None


def _unreachable() -> tuple[str, str | None]:
    """The test server's URL and why it cannot be used (None when it can)."""
    url = os.environ.get("STATECORE_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    if url not in _reachable:
        _reachable[url] = _probe(url)
    return url, _reachable[url]


def _must_run() -> bool:
    return os.environ.get("CI") == "true"


def service_missing(reason: str) -> NoReturn:
    """A service a test needs is missing: under ``CI=true`` (where .ci/run installs and
    starts it) the test fails; elsewhere it is skipped with the reason."""
    if _must_run():
        pytest.fail(f"CI=true and a service the tests need is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def _probe_cluster(url: str) -> str | None:
    try:
        from redis import exceptions as rx
        from redis.cluster import RedisCluster
    except ImportError as exc:
        return f"redis-py is not installed ({exc}); pip install 'statecore[redis]'"
    try:
        parts = urlsplit(url)
        client = RedisCluster(
            host=parts.hostname or "localhost",
            port=parts.port or 6379,
            socket_connect_timeout=1,
            socket_timeout=2,
        )
        try:
            state = client.cluster_info().get("cluster_state")
        finally:
            client.close()
    except (rx.RedisError, rx.RedisClusterException, OSError, ValueError) as exc:
        return f"no Redis Cluster at {url} ({type(exc).__name__}: {exc})"
    if state != "ok":
        return f"the Redis Cluster at {url} says cluster_state:{state}"
    return None


@pytest.fixture(scope="session")
def redis_cluster_url() -> str:
    """The test cluster's store URL; skip (fail under ``CI=true``) if it is not serving."""
    url = os.environ.get("STATECORE_TEST_REDIS_CLUSTER_URL", DEFAULT_REDIS_CLUSTER_URL)
    if url not in _reachable:
        _reachable[url] = _probe_cluster(url)
    if (reason := _reachable[url]) is not None:
        service_missing(
            f"{reason}; start one with .ci/redis-cluster or set STATECORE_TEST_REDIS_CLUSTER_URL"
        )
    return url


def cluster_client(url: str) -> RedisCluster[bytes]:
    """A plain redis-py cluster client on the cluster a store URL names, for inspection."""
    from redis.cluster import RedisCluster

    parts = urlsplit(url)
    return RedisCluster(host=parts.hostname or "localhost", port=parts.port or 6379)


@pytest.fixture(scope="session")
def redis_cluster_admin(redis_cluster_url: str) -> Iterator[RedisCluster[bytes]]:
    """One plain redis-py client on the test cluster for the session, to inspect and clean."""
    client = cluster_client(redis_cluster_url)
    yield client
    client.close()


def delete_cluster_prefix(client: RedisCluster[bytes], prefix: str) -> None:
    """Delete every key under ``prefix:`` on every primary of the cluster."""
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    pipe = client.pipeline(transaction=False)  # split per node; keys span slots
    for key in keys:
        pipe.delete(key)
    pipe.execute()


@pytest.fixture
def redis_cluster_cleanup(
    redis_cluster_admin: RedisCluster[bytes],
) -> Iterator[Callable[[str], None]]:
    """Register prefixes (``redis_cluster_cleanup(prefix)``) whose keys go after the test."""
    prefixes: list[str] = []
    yield prefixes.append
    for prefix in prefixes:
        delete_cluster_prefix(redis_cluster_admin, prefix)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test server's URL; skip (fail under ``CI=true``) if it is unreachable."""
    url, reason = _unreachable()
    if reason is not None:
        service_missing(f"{reason}; start one or set STATECORE_TEST_REDIS_URL")
    return url


def redis_store_factories() -> dict[str, Callable[[Path], Store]]:
    """``{"redis": factory}`` for a table of store factories, or ``{}`` without a server.

    Each store the factory makes has a fresh prefix and deletes its keys when closed.
    Without a server this returns ``{}`` locally and fails the collection under CI.
    """
    url, reason = _unreachable()
    if reason is not None:
        if _must_run():
            pytest.fail(f"CI=true and the Redis tests cannot run: {reason}", pytrace=False)
        return {}
    from statecore.backends.redis import RedisStore

    class ScratchRedisStore(RedisStore):
        def close(self) -> None:
            delete_prefix(url, self.prefix)
            super().close()

    def make(_tmp: Path) -> Store:
        return ScratchRedisStore(url, prefix=unique_prefix(), retries=1, backoff=0.01)

    return {"redis": make}


def unique_prefix() -> str:
    """A key prefix no other test uses."""
    return f"sc-test-{uuid.uuid4().hex[:12]}"


def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix:`` on the server at ``url``."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


@pytest.fixture
def redis_cleanup(redis_url: str) -> Iterator[Callable[[str], None]]:
    """Register prefixes (``redis_cleanup(prefix)``) whose keys go after the test."""
    prefixes: list[str] = []
    yield prefixes.append
    for prefix in prefixes:
        delete_prefix(redis_url, prefix)


@pytest.fixture
def redis_store(redis_url: str, redis_cleanup: Callable[[str], None]) -> Iterator[RedisStore]:
    """A RedisStore on the test server under a fresh prefix, its keys deleted afterwards."""
    from statecore.backends.redis import RedisStore

    prefix = unique_prefix()
    redis_cleanup(prefix)
    store = RedisStore(redis_url, prefix=prefix, retries=1, backoff=0.01)
    yield store
    store.close()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each store in turn: memory, SQLite in ``tmp_path``, Redis under a fresh prefix.

    A test module that defines its own ``store`` fixture overrides this one.
    """
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        s: Store = SQLiteStore(tmp_path / "runs.db")
    else:
        from statecore.backends.redis import RedisStore

        redis_url = request.getfixturevalue("redis_url")
        prefix = unique_prefix()
        request.getfixturevalue("redis_cleanup")(prefix)
        s = RedisStore(redis_url, prefix=prefix)
    try:
        yield s
    finally:
        s.close()


# --- a real browser (Selenium driving Debian's headless Chromium) ---

BROWSER_WAIT = 60  # seconds a condition may take on a busy machine (not a timing assertion)


def chrome_paths() -> tuple[str, str]:
    exe = next(
        (
            p
            for p in ("/usr/bin/chromium", shutil.which("chromium") or "")
            if p and os.path.exists(p)
        ),
        None,
    )
    drv = next(
        (
            p
            for p in ("/usr/bin/chromedriver", shutil.which("chromedriver") or "")
            if p and os.path.exists(p)
        ),
        None,
    )
    if exe is None or drv is None:
        service_missing(
            "chromium and chromium-driver are not installed "
            "(apt-get install chromium chromium-driver)"
        )
    return exe, drv


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        service_missing("selenium is not installed")
    exe, drv = chrome_paths()
    opts = webdriver.ChromeOptions()
    opts.binary_location = exe
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--no-first-run",
        "--disable-background-networking",
    ):
        opts.add_argument(arg)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chrome-profile')}")
    driver = webdriver.Chrome(service=Service(drv), options=opts)
    driver.set_page_load_timeout(BROWSER_WAIT * 2)
    try:
        yield driver
    finally:
        driver.quit()
