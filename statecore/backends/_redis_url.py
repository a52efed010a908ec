"""Redis URLs for the Redis store: parsing them into redis-py arguments and store options.

See :meth:`statecore.backends.redis.RedisStore.from_url` for the accepted forms.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis

from statecore.errors import InvalidStoreURL, StatecoreError


def _parse_bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not a yes/no value")


# query option -> (RedisStore keyword, parser)
_STORE_OPTIONS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "prefix": ("prefix", str),
    "wait": ("durable_wait", int),
    "wait_aof": ("wait_aof", _parse_bool),
    "wait_timeout": ("wait_timeout", float),
    "retries": ("retries", int),
    "backoff": ("backoff", float),
}
# query option -> parser, passed on to redis-py
_CONNECTION_OPTIONS: dict[str, Callable[[str], Any]] = {
    "password": str,
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "client_name": str,
}
_TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
DEFAULTS: dict[str, Any] = {
    "prefix": "statecore",
    "durable_wait": 0,
    "wait_aof": False,
    "wait_timeout": 1.0,
    "retries": 5,
    "backoff": 0.05,
}


@dataclass(frozen=True, slots=True)
class ParsedURL:
    connection: dict[str, Any]
    options: dict[str, Any]
    display: str
    where: str


def parse_url(url: str) -> ParsedURL:
    """Split a Redis URL into redis-py connection arguments and store options."""
    shown = re.sub(r"(//[^/@]*:)[^/@]*@", r"\1***@", url)
    shown = re.sub(r"([?&]password=)[^&#]*", r"\1***", shown)

    def bad(why: str) -> StatecoreError:
        return InvalidStoreURL(
            f"invalid Redis URL {shown!r}: {why}. Expected redis://[[user]:password@]host"
            "[:port][/db], rediss://... or unix://[[user]:password@]/path/to/socket[?db=N]"
        )

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise bad(str(exc)) from exc
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise bad(f"the scheme {parts.scheme!r} is not redis, rediss or unix")
    if parts.fragment:
        raise bad("a fragment (#...) is not allowed")
    conn: dict[str, Any] = {"db": None}
    if parts.username:
        conn["username"] = unquote(parts.username)
    if parts.password is not None:
        conn["password"] = unquote(parts.password)
    if parts.scheme == "unix":
        if parts.hostname:
            raise bad(f"a unix URL takes no host ({parts.hostname!r}); write unix:///path")
        if parts.path in ("", "/"):
            raise bad("the socket path is missing")
        conn["unix_socket_path"] = unquote(parts.path)
        where = f"unix socket {conn['unix_socket_path']}"
    else:
        conn["host"] = parts.hostname or "localhost"
        conn["port"] = 6379 if port is None else port
        conn["ssl"] = parts.scheme == "rediss"
        where = f"{conn['host']}:{conn['port']}"
        if path := parts.path.strip("/"):
            if not path.isdigit():
                raise bad(f"the database must be a number, not {path!r}")
            conn["db"] = int(path)
    options: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        try:
            if name == "db":
                if conn["db"] is not None or not value.isdigit():
                    raise ValueError(f"db={value!r}: the database is a number, given once")
                conn["db"] = int(value)
            elif name in _STORE_OPTIONS:
                keyword, parse = _STORE_OPTIONS[name]
                options[keyword] = parse(value)
            elif name in _CONNECTION_OPTIONS:
                conn[name] = _CONNECTION_OPTIONS[name](value)
            elif name in _TLS_OPTIONS and parts.scheme == "rediss":
                conn[name] = value
            else:
                known = [*_STORE_OPTIONS, "db", *_CONNECTION_OPTIONS, *_TLS_OPTIONS]
                raise ValueError(f"unknown option {name!r} (known: {', '.join(known)})")
        except ValueError as exc:
            raise bad(str(exc)) from exc
    conn["db"] = conn["db"] or 0
    return ParsedURL(conn, options, shown, where)


def describe(client: redis.Redis[bytes]) -> tuple[str, str]:
    """(where, url) of a client built elsewhere: ``host:port`` or the socket path."""
    kwargs = client.connection_pool.connection_kwargs
    db = kwargs.get("db", 0)
    if "path" in kwargs:
        return f"unix socket {kwargs['path']}", f"unix://{kwargs['path']}?db={db}"
    host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
    scheme = "rediss" if "SSL" in client.connection_pool.connection_class.__name__ else "redis"
    return f"{host}:{port}", f"{scheme}://{host}:{port}/{db}"
