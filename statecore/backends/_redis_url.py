"""Redis URLs for the Redis store: parsing them into redis-py arguments and store options.

See :meth:`statecore.backends.redis.RedisStore.from_url` for the accepted forms. A Redis
Cluster is asked for with ``?cluster=yes`` on an otherwise ordinary ``redis://`` or
``rediss://`` URL: that is the URL redis-py's own ``RedisCluster.from_url`` reads, so a
redis-py user's URL works as it is, TLS included; ``node=host:port`` (repeatable) adds
startup nodes, so that the store can find the cluster while the URL's own host is down.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
from redis.cluster import RedisCluster

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
_CLUSTER_OPTIONS = ("cluster", "node")
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
    """A parsed Redis URL.

    Attributes:
        connection: keyword arguments for ``redis.Redis`` (for a cluster: for every node's
            connections, without host, port and db).
        options: the store options the URL sets (``RedisStore`` keywords).
        display: the URL with its passwords masked, for messages.
        where: what serves the URL, for messages (``Redis at host:port``).
        cluster_nodes: the startup nodes ``(host, port)`` of a cluster URL; empty for a
            single server.
    """

    connection: dict[str, Any]
    options: dict[str, Any]
    display: str
    where: str
    cluster_nodes: tuple[tuple[str, int], ...] = ()


def parse_url(url: str) -> ParsedURL:
    """Split a Redis URL into redis-py connection arguments and store options."""
    shown = re.sub(r"(//[^/@]*:)[^/@]*@", r"\1***@", url)
    shown = re.sub(r"([?&]password=)[^&#]*", r"\1***", shown)

    def bad(why: str) -> StatecoreError:
        return InvalidStoreURL(
            f"invalid Redis URL {shown!r}: {why}. Expected redis://[[user]:password@]host"
            "[:port][/db], rediss://... or unix://[[user]:password@]/path/to/socket[?db=N]; "
            "for a Redis Cluster redis://host[:port][/0]?cluster=yes[&node=host:port...]"
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
    cluster: bool | None = None
    extra_nodes: list[tuple[str, int]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        try:
            if name == "cluster":
                if cluster is not None:
                    raise ValueError("cluster is given twice")
                cluster = _parse_bool(value)
            elif name == "node":
                extra_nodes.append(_parse_node(value))
            elif name == "db":
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
                known = [
                    *_STORE_OPTIONS,
                    "db",
                    *_CONNECTION_OPTIONS,
                    *_TLS_OPTIONS,
                    *_CLUSTER_OPTIONS,
                ]
                raise ValueError(f"unknown option {name!r} (known: {', '.join(known)})")
        except ValueError as exc:
            raise bad(str(exc)) from exc
    if not cluster:
        if extra_nodes:
            raise bad("node=... names a startup node of a Redis Cluster; add cluster=yes")
        conn["db"] = conn["db"] or 0
        return ParsedURL(conn, options, shown, f"Redis at {where}")
    if parts.scheme == "unix":
        raise bad("a Redis Cluster is reached over TCP (redis:// or rediss://), not a socket")
    if conn.pop("db") not in (None, 0):
        raise bad("a Redis Cluster has only database 0")
    nodes = [(conn.pop("host"), conn.pop("port"))]
    nodes += [node for node in extra_nodes if node not in nodes]
    where = ", ".join(f"{host}:{port}" for host, port in nodes)
    return ParsedURL(conn, options, shown, f"Redis Cluster at {where}", tuple(nodes))


def _parse_node(value: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6 address]:port``) of a cluster startup node."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"node={value!r}: a startup node is host:port")
    return host, int(port)


def describe(client: redis.Redis[bytes]) -> tuple[str, str]:
    """(where, url) of a client built elsewhere: ``host:port`` or the socket path."""
    kwargs = client.connection_pool.connection_kwargs
    db = kwargs.get("db", 0)
    if "path" in kwargs:
        return f"Redis at unix socket {kwargs['path']}", f"unix://{kwargs['path']}?db={db}"
    host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
    scheme = "rediss" if "SSL" in client.connection_pool.connection_class.__name__ else "redis"
    return f"Redis at {host}:{port}", f"{scheme}://{host}:{port}/{db}"


def describe_cluster(client: RedisCluster[bytes]) -> tuple[str, str]:
    """(where, url) of a cluster client built elsewhere, naming the nodes it knows."""
    names = sorted(node.name for node in client.get_nodes()) or ["?"]
    kwargs = client.get_connection_kwargs()
    tls = kwargs.get("ssl") or "SSL" in getattr(kwargs.get("connection_class"), "__name__", "")
    scheme = "rediss" if tls else "redis"
    return f"Redis Cluster at {', '.join(names)}", f"{scheme}://{names[0]}/0?cluster=yes"
