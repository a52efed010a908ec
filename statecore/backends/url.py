"""Opening a store from a URL: ``memory://``, ``sqlite:///...``, ``redis://...`` and plugins.

Explicit store objects come first (``flow.run(store=SQLiteStore(...))``); URLs are for
configuration files, the CLI and the ``STATECORE_STORE`` environment variable. Schemes
beyond the built-in ones come from the entry-point group ``statecore.backends``: each
entry point is named after its scheme and loads a callable that takes the whole URL and
returns a :class:`~statecore.backends.base.Store`::

    [project.entry-points."statecore.backends"]
    postgres = "statecore_postgres:PostgresStore.from_url"

Built-in schemes cannot be overridden by an entry point.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

from statecore.backends.base import Store
from statecore.backends.memory import MemoryStore
from statecore.errors import InvalidStoreURL

__all__ = [
    "DEFAULT_STORE_URL",
    "ENTRY_POINT_GROUP",
    "ENV_VAR",
    "available_schemes",
    "default_store_url",
    "open_store",
]

#: Where runs go when nothing else is configured: a file under the working directory.
DEFAULT_STORE_URL: Final = "sqlite:///.statecore/runs.db"
#: The environment variable that names the default store's URL.
ENV_VAR: Final = "STATECORE_STORE"
#: The entry-point group third-party backends register their schemes in.
ENTRY_POINT_GROUP: Final = "statecore.backends"

_BUILTIN_SCHEMES: Final = ("memory", "sqlite", "redis", "rediss", "unix")
_REDIS_SCHEMES: Final = frozenset({"redis", "rediss", "unix"})
# RFC 3986's scheme grammar; anything before the first ':' that does not match it (a
# Windows drive letter matches, and is then an unknown scheme) is not a URL at all.
_SCHEME: Final = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):(?P<rest>.*)", re.DOTALL)
_SQLITE_OPTIONS: Final = ("busy_timeout", "synchronous")
_SQLITE_FORM: Final = "sqlite:///relative/path.db or sqlite:////absolute/path.db"


def default_store_url() -> str:
    """The URL that ``open_store(None)`` opens: ``$STATECORE_STORE``, else the default.

    An empty ``STATECORE_STORE`` counts as unset.
    """
    return os.environ.get(ENV_VAR) or DEFAULT_STORE_URL


def available_schemes() -> list[str]:
    """The schemes ``open_store`` accepts: the built-in ones, then installed plugins."""
    plugins = sorted(name for name in _plugin_entry_points() if name not in _BUILTIN_SCHEMES)
    return [*_BUILTIN_SCHEMES, *plugins]


def open_store(url: str | None = None) -> Store:
    """Open the store a URL names.

    Args:
        url: ``memory://``; ``sqlite:///relative/path.db`` (relative to the working
            directory) or ``sqlite:////absolute/path.db``, optionally with
            ``?synchronous=FULL&busy_timeout=10``; ``redis://``, ``rediss://`` or
            ``unix://`` URLs as redis-py reads them, with ``?cluster=yes`` on a
            ``redis://`` or ``rediss://`` URL for a Redis Cluster (see
            :meth:`~statecore.backends.redis.RedisStore.from_url`); or a scheme an
            installed plugin registers. None means :func:`default_store_url`.

    Returns:
        A new store; the caller closes it.

    Raises:
        InvalidStoreURL: the URL is malformed or its scheme is unknown (the message
            lists the schemes that are available).
        ImportError: a Redis URL without the ``redis`` extra installed.
        StoreUnavailable: the store cannot be opened (a Redis Cluster is asked for its
            slot map here; a single Redis server is first contacted on first use).

    Example:
        >>> store = open_store("memory://")
        >>> store.head("no-such-run")
        0
    """
    if url is None:
        url = default_store_url()
    if not isinstance(url, str):
        raise InvalidStoreURL(f"a store URL must be a string, not {type(url).__name__}")
    url = url.strip()
    match = _SCHEME.fullmatch(url)
    if match is None:
        raise InvalidStoreURL(
            f"{_redact(url)!r} is not a store URL (scheme://...); "
            f"available schemes: {', '.join(available_schemes())}"
        )
    scheme = match["scheme"].lower()
    rest = match["rest"]
    if scheme == "memory":
        return _open_memory(url, rest)
    if scheme == "sqlite":
        return _open_sqlite(url, rest)
    if scheme in _REDIS_SCHEMES:
        return _open_redis(url, scheme)
    entry_point = _plugin_entry_points().get(scheme)
    if entry_point is None:
        raise InvalidStoreURL(
            f"no store backend serves the scheme {scheme!r} of {_redact(url)!r}; "
            f"available schemes: {', '.join(available_schemes())} (a plugin adds one "
            f"through the entry-point group {ENTRY_POINT_GROUP!r})"
        )
    return _open_plugin(url, entry_point)


def _open_memory(url: str, rest: str) -> Store:
    if rest not in ("", "//"):
        raise InvalidStoreURL(
            f"{url!r}: a memory store takes no host or path; use 'memory://' "
            "(each call opens a new, empty store)"
        )
    return MemoryStore(url=url)


def _open_sqlite(url: str, rest: str) -> Store:
    from statecore.backends.sqlite import SQLiteStore  # sqlite3 is only loaded when used

    if not rest.startswith("///"):
        raise InvalidStoreURL(f"{url!r}: a SQLite URL has no host; use {_SQLITE_FORM}")
    path, _, query = rest[3:].partition("?")
    path = unquote(path.partition("#")[0])
    if not path:
        raise InvalidStoreURL(f"{url!r}: the URL names no database file; use {_SQLITE_FORM}")
    if path == ":memory:":
        raise InvalidStoreURL(
            f"{url!r}: an in-memory SQLite database is not shared between threads; use 'memory://'"
        )
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError as exc:
        raise InvalidStoreURL(f"{url!r}: malformed query string ({exc})") from exc
    unknown = sorted(set(options) - set(_SQLITE_OPTIONS))
    if unknown:
        raise InvalidStoreURL(
            f"{url!r}: unknown SQLite option(s) {', '.join(unknown)}; "
            f"known: {', '.join(_SQLITE_OPTIONS)}"
        )
    synchronous = options.get("synchronous", "NORMAL").upper()
    if synchronous not in ("NORMAL", "FULL"):
        raise InvalidStoreURL(f"{url!r}: synchronous must be NORMAL or FULL")
    try:
        busy_timeout = float(options.get("busy_timeout", "5"))
    except ValueError as exc:
        raise InvalidStoreURL(f"{url!r}: busy_timeout must be a number of seconds") from exc
    if not busy_timeout >= 0:  # also refuses NaN
        raise InvalidStoreURL(f"{url!r}: busy_timeout must be >= 0 seconds")
    return SQLiteStore(
        path,
        synchronous="FULL" if synchronous == "FULL" else "NORMAL",
        busy_timeout=busy_timeout,
        url=url,
    )


def _open_redis(url: str, scheme: str) -> Store:
    try:
        module = importlib.import_module("statecore.backends.redis")
    except ImportError as exc:
        raise ImportError(
            f"the {scheme}:// store needs the redis extra: pip install 'statecore[redis]' ({exc})"
        ) from exc
    try:
        store = module.RedisStore.from_url(url)
    except ValueError as exc:
        if isinstance(exc, InvalidStoreURL):
            raise
        raise InvalidStoreURL(f"{_redact(url)!r}: {exc}") from exc
    if not isinstance(store, Store):
        raise TypeError(f"RedisStore.from_url returned {type(store).__name__}, not a Store")
    return store


def _open_plugin(url: str, entry_point: EntryPoint) -> Store:
    opener: Callable[[str], object] = entry_point.load()
    store = opener(url)
    if not isinstance(store, Store):
        raise TypeError(
            f"the {entry_point.name!r} store plugin ({entry_point.value}) returned "
            f"{type(store).__name__}, not a statecore Store"
        )
    return store


def _plugin_entry_points() -> dict[str, EntryPoint]:
    return {ep.name.lower(): ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _redact(url: str) -> str:
    """The URL without its password, for messages (Redis URLs often carry one)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
