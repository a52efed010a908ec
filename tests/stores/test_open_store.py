"""open_store: URLs to stores, the default, and plugins found through entry points."""

from __future__ import annotations

import stat
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import ClassVar

import pytest

import statecore.backends
from statecore.backends import MemoryStore, SQLiteStore, Store, default_store_url, open_store
from statecore.backends.url import available_schemes
from statecore.errors import InvalidStoreURL, StatecoreError


def test_public_names() -> None:
    assert {"SQLiteStore", "open_store", "default_store_url"} <= set(statecore.backends.__all__)
    assert "RedisStore" not in statecore.backends.__all__  # `import *` must not load redis


def test_importing_the_backends_does_not_import_redis() -> None:
    code = (
        "import sys, statecore.backends; "
        "assert 'redis' not in sys.modules, 'redis'; "
        "assert 'statecore.backends.redis' not in sys.modules, 'statecore.backends.redis'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- memory -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["memory://", "memory:", "MEMORY://"])
def test_memory(url: str) -> None:
    first, second = open_store(url), open_store(url)
    assert isinstance(first, MemoryStore) and isinstance(second, MemoryStore)
    assert first is not second  # each call is a new, empty store
    assert first.url == url


def test_memory_with_a_path_is_malformed() -> None:
    with pytest.raises(InvalidStoreURL, match="memory://"):
        open_store("memory://somewhere")


# -- sqlite -------------------------------------------------------------------------------


def test_sqlite_relative_path_is_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///data/runs.db") as store:
        assert isinstance(store, SQLiteStore)
        assert store.path == tmp_path / "data" / "runs.db"
        assert store.url == "sqlite:///data/runs.db"
    assert (tmp_path / "data" / "runs.db").is_file()


def test_sqlite_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "elsewhere" / "abs.db"
    url = f"sqlite:///{target}"
    assert url.startswith("sqlite:////")
    with open_store(url) as store:
        assert isinstance(store, SQLiteStore)
        assert store.path == target
    assert not (tmp_path / str(target).lstrip("/")).exists()


def test_sqlite_options_and_escapes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/with%20space.db?synchronous=full&busy_timeout=2.5"
    with open_store(url) as store:
        assert isinstance(store, SQLiteStore)
        assert store.path == tmp_path / "with space.db"
        assert store.synchronous == "FULL"
        assert store.busy_timeout == 2.5
        assert store.inspect()["synchronous"] == 2


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("sqlite://host/runs.db", "no host"),
        ("sqlite:/runs.db", "no host"),
        ("sqlite:///", "no database file"),
        ("sqlite:///:memory:", "memory://"),
        ("sqlite:///runs.db?bogus=1", "unknown SQLite option"),
        ("sqlite:///runs.db?synchronous=OFF", "NORMAL or FULL"),
        ("sqlite:///runs.db?busy_timeout=soon", "busy_timeout"),
        ("sqlite:///runs.db?busy_timeout=-1", "busy_timeout"),
        ("sqlite:///runs.db?synchronous", "query"),
    ],
)
def test_malformed_sqlite_urls(
    url: str, complaint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidStoreURL, match=complaint):
        open_store(url)
    assert list(tmp_path.iterdir()) == []  # nothing was created


# -- the default ----------------------------------------------------------------------------


def test_default_is_a_sqlite_file_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STATECORE_STORE", raising=False)
    assert default_store_url() == "sqlite:///.statecore/runs.db"
    with open_store() as store:
        assert isinstance(store, SQLiteStore)
        assert store.path == tmp_path / ".statecore" / "runs.db"
    assert stat.S_IMODE((tmp_path / ".statecore" / "runs.db").stat().st_mode) == 0o600


def test_environment_variable_names_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATECORE_STORE", "memory://")
    assert default_store_url() == "memory://"
    assert isinstance(open_store(None), MemoryStore)
    monkeypatch.setenv("STATECORE_STORE", f"sqlite:///{tmp_path}/env.db")
    with open_store() as store:
        assert isinstance(store, SQLiteStore) and store.path == tmp_path / "env.db"
    monkeypatch.setenv("STATECORE_STORE", "")  # empty counts as unset
    assert default_store_url() == "sqlite:///.statecore/runs.db"


def test_environment_variable_with_a_bad_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATECORE_STORE", "nonsense")
    with pytest.raises(InvalidStoreURL, match="nonsense"):
        open_store()


# -- bad URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["runs.db", "", "://x", "/abs/runs.db", "1http://x"])
def test_not_a_url(url: str) -> None:
    with pytest.raises(InvalidStoreURL) as raised:
        open_store(url)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, StatecoreError)
    assert "available schemes: memory, sqlite, redis, rediss, unix" in str(raised.value)


@pytest.mark.parametrize("url", ["postgres://db/runs", "C:\\runs.db", "s3://bucket/key"])
def test_unknown_scheme_lists_the_available_ones(url: str) -> None:
    with pytest.raises(ValueError, match="available schemes: memory, sqlite, redis"):
        open_store(url)


def test_a_url_that_is_not_a_string() -> None:
    with pytest.raises(InvalidStoreURL, match="string"):
        open_store(42)  # type: ignore[arg-type]


# -- redis ---------------------------------------------------------------------------------


class _FakeRedisStore(MemoryStore):
    opened: ClassVar[list[str]] = []

    @classmethod
    def from_url(cls, url: str) -> _FakeRedisStore:
        if "bad" in url:
            raise ValueError("no such option")
        cls.opened.append(url)
        return cls(url=url)


@pytest.fixture
def fake_redis_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("statecore.backends.redis")
    module.RedisStore = _FakeRedisStore  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "statecore.backends.redis", module)
    _FakeRedisStore.opened = []
    return module


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "rediss://h:6380/1", "unix:///run/redis.sock?db=2"]
)
def test_redis_schemes_go_to_redis_store_from_url(
    url: str, fake_redis_module: types.ModuleType
) -> None:
    store = open_store(url)
    assert isinstance(store, _FakeRedisStore)
    assert _FakeRedisStore.opened == [url]


def test_redis_store_is_exported_lazily(fake_redis_module: types.ModuleType) -> None:
    assert statecore.backends.RedisStore is _FakeRedisStore
    assert "RedisStore" in dir(statecore.backends)


def test_a_bad_redis_url_hides_the_password(fake_redis_module: types.ModuleType) -> None:
    with pytest.raises(InvalidStoreURL) as raised:
        open_store("redis://:hunter2@host:6379/0?bad=1")
    assert "hunter2" not in str(raised.value)
    assert "***" in str(raised.value)


def test_redis_without_the_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "statecore.backends.redis", None)
    with pytest.raises(ImportError, match=r"pip install 'statecore\[redis\]'"):
        open_store("redis://localhost:6379/0")


# -- plugins --------------------------------------------------------------------------------


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed distribution (a dist-info on sys.path) with two store entry points."""
    (tmp_path / "statecore_fake_backend.py").write_text(
        textwrap.dedent(
            """
            from statecore.backends import MemoryStore

            def open_fake(url):
                return MemoryStore(url=url)

            def open_broken(url):
                return "not a store"
            """
        )
    )
    dist_info = tmp_path / "statecore_fake_backend-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: statecore-fake-backend\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[statecore.backends]\n"
        "fake = statecore_fake_backend:open_fake\n"
        "broken = statecore_fake_backend:open_broken\n"
        "memory = statecore_fake_backend:open_broken\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_plugin_scheme_from_an_entry_point(plugin: Path) -> None:
    store = open_store("fake://anything/at/all")
    assert isinstance(store, Store)
    assert store.url == "fake://anything/at/all"
    assert isinstance(open_store("FAKE://x"), Store)
    assert "fake" in available_schemes()


def test_unknown_scheme_message_lists_plugins(plugin: Path) -> None:
    with pytest.raises(InvalidStoreURL, match="broken, fake"):
        open_store("nope://x")


def test_a_plugin_must_return_a_store(plugin: Path) -> None:
    with pytest.raises(TypeError, match="'broken' store plugin"):
        open_store("broken://x")


def test_a_plugin_cannot_take_over_a_builtin_scheme(plugin: Path) -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    assert available_schemes().count("memory") == 1
