"""How the Redis store sends pipelines and raw stream reads: to one server or to a Redis Cluster.

Single-key commands (HGET, HGETALL, LRANGE, the run index's sorted-set commands) go
through the redis-py client as they are; ``redis.Redis`` and ``redis.cluster.RedisCluster``
route them alike. This module covers the rest, where a cluster needs more than routing:

A run's pipeline (``key`` given): an append script and the ``WAIT`` after it, a lease or
cache script, a page of the run's stream. On one server it is an ordinary pipeline. On a
cluster it goes, as an ordinary pipeline too, to the primary that owns the key's slot, on
one connection of that node's own pool, because:

* ``WAIT`` counts the replicas that acknowledged the writes of *its own connection*, so it
  must follow the append on the same connection. redis-py's ClusterPipeline sends a
  keyless WAIT to an arbitrary node, where it would vouch for nothing.
* After a connection error ClusterPipeline resends the failed commands one by one. An
  append whose reply was lost would run twice, and the second run would report a conflict
  with the first; the store instead checks whether a retried append already landed.

Redirections are followed here: MOVED updates the slot map and tries the owner again, ASK
sends ``ASKING`` and the commands to the importing node, at most ``_REDIRECTS`` times in a
row, then :class:`redis.exceptions.ClusterError`. Every key a run's pipeline touches must
hash to the key's slot (the store's keys carry the run's hash tag); Redis refuses a script
whose keys span slots with CROSSSLOT.

A pipeline across runs (``key`` None): the run index with a run's metadata, listing,
pruning. On a cluster this is redis-py's ClusterPipeline with ``transaction=False``: it
splits the commands per node and is not atomic (MULTI cannot span slots), which is why
nothing that must be atomic is ever sent this way; the run index is updated outside the
append script by design. Its commands are independent of one another.

Scripts a server has forgotten (a restart, a failover, ``SCRIPT FLUSH``) are loaded again
and the pipeline is resent: on every primary for a pipeline across runs, on the node for a
run's pipeline.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis import exceptions as rx

from statecore.backends._redis_codec import as_is
from statecore.backends._redis_scripts import Script

Queue = Callable[[Any], object]
"""Puts commands on a pipeline (``pipe.execute_command(...)``, ``pipe.hgetall(...)``)."""

# Redirections followed in a row before giving up; a slot moves once per resharding step.
_REDIRECTS = 5


def exchange(
    pipeline: Callable[[], Any],
    queue: Queue,
    scripts: Sequence[Script],
    load: Callable[[str], object],
    *,
    independent: bool,
    skip: int = 0,
) -> list[Any]:
    """Send what ``queue`` puts on a fresh ``pipeline()`` in one round trip; reload lost scripts.

    Args:
        pipeline: makes an empty pipeline.
        queue: puts the commands on it.
        scripts: the scripts the commands run, loaded with ``load`` on NOSCRIPT.
        load: ``SCRIPT LOAD`` where the pipeline goes.
        independent: the commands do not depend on one another (a pipeline across runs):
            after NOSCRIPT each keeps its first reply unless that was NOSCRIPT, since a
            command that ran the first time (a prune) may answer differently when resent.
            Otherwise the pipeline is one script and what must follow it (WAIT), and the
            resent pipeline's replies are taken whole.
        skip: replies to drop from the front (an ``ASKING`` the pipeline starts with).

    Returns:
        The replies, in order.

    Raises:
        redis.exceptions.RedisError: the first error reply, for the store to translate.
    """
    pipe = pipeline()
    queue(pipe)
    replies: list[Any] = pipe.execute(raise_on_error=False)[skip:]
    if any(isinstance(reply, rx.NoScriptError) for reply in replies):
        for script in scripts:
            load(script.source)
        pipe = pipeline()
        queue(pipe)
        again: list[Any] = pipe.execute(raise_on_error=False)[skip:]
        if independent:
            replies = [
                new if isinstance(old, rx.NoScriptError) else old
                for old, new in zip(replies, again, strict=True)
            ]
        else:
            replies = again
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def raw_reader(pool: Any) -> redis.Redis[bytes]:
    """A client on ``pool`` whose XRANGE replies are the raw arrays the store decodes.

    redis-py's own XRANGE callback builds a dict per entry; skipping it reads a log about
    1.3 times faster. The client shares the pool, so it opens no connections of its own.
    """
    client: redis.Redis[bytes] = redis.Redis(connection_pool=pool)
    client.response_callbacks["XRANGE"] = as_is
    return client


class Transport(abc.ABC):
    """Pipelines and raw stream reads on one server or on a cluster (see the module doc).

    Attributes:
        client: the redis-py client, for single-key commands.
    """

    client: Any

    @abc.abstractmethod
    def send(self, queue: Queue, scripts: Sequence[Script], *, key: str | None) -> list[Any]:
        """Send a run's pipeline (every command on ``key``'s slot) or, with ``key`` None, a
        pipeline across runs; see :func:`exchange`."""

    def xrange(self, key: str, start: str, count: int) -> list[Any]:
        """At most ``count`` raw entries of the stream ``key`` from the id ``start`` on."""
        replies = self.send(lambda p: p.xrange(key, start, "+", count), (), key=key)
        entries: list[Any] = replies[0]
        return entries

    @abc.abstractmethod
    def info(self, section: str) -> list[tuple[str, dict[str, Any]]]:
        """``(node name, INFO section)`` of every primary ("" names the one server)."""

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


class ServerTransport(Transport):
    """One Redis server (or a primary with replicas, through its address)."""

    def __init__(self, client: redis.Redis[bytes]) -> None:
        self.client = client
        self._raw = raw_reader(client.connection_pool)

    def send(self, queue: Queue, scripts: Sequence[Script], *, key: str | None) -> list[Any]:
        return exchange(
            lambda: self._raw.pipeline(transaction=False),
            queue,
            scripts,
            self.client.script_load,
            independent=key is None,
        )

    def xrange(self, key: str, start: str, count: int) -> list[Any]:
        entries: list[Any] = self._raw.xrange(key, start, "+", count)
        return entries

    def info(self, section: str) -> list[tuple[str, dict[str, Any]]]:
        return [("", self.client.info(section))]


class ClusterTransport(Transport):
    """A Redis Cluster through a ``redis.cluster.RedisCluster`` client."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._readers: dict[str, redis.Redis[bytes]] = {}

    def _node_client(self, node: Any) -> redis.Redis[bytes]:
        """A raw-reading client on ``node``'s pool, made again if redis-py replaced it."""
        pool = self.client.get_redis_connection(node).connection_pool
        reader = self._readers.get(node.name)
        if reader is None or reader.connection_pool is not pool:
            reader = self._readers[node.name] = raw_reader(pool)
        return reader

    def _refresh(self) -> None:
        """Learn the slot map again; if that fails too, the caller's error says enough."""
        with contextlib.suppress(rx.RedisError, rx.RedisClusterException):
            self.client.nodes_manager.initialize()

    def send(self, queue: Queue, scripts: Sequence[Script], *, key: str | None) -> list[Any]:
        if key is None:
            return exchange(
                lambda: self.client.pipeline(transaction=False),
                queue,
                scripts,
                self.client.script_load,
                independent=True,
            )
        asked: Any = None
        for _ in range(_REDIRECTS):
            try:
                node = asked or self.client.get_node_from_key(key)
            except rx.SlotNotCoveredError:
                self._refresh()
                raise
            client = self._node_client(node)

            def pipeline(client: Any = client, asking: bool = asked is not None) -> Any:
                pipe = client.pipeline(transaction=False)
                if asking:
                    pipe.execute_command("ASKING")
                return pipe

            try:
                return exchange(
                    pipeline,
                    queue,
                    scripts,
                    client.script_load,
                    independent=False,
                    skip=0 if asked is None else 1,
                )
            except rx.MovedError as exc:
                # The slot has a new owner for good: note it and go there.
                self.client.nodes_manager.move_slot(exc)
                asked = None
            except rx.AskError as exc:
                # The slot is migrating and the key has left: ask the importing node, once.
                asked = self.client.get_node(host=exc.host, port=exc.port)
                if asked is None:
                    self._refresh()
            except (rx.ConnectionError, rx.TimeoutError, rx.ClusterDownError):
                # A failover may be under way; the store's retry needs the new slot map.
                self._refresh()
                raise
        raise rx.ClusterError(
            f"the slot of {key!r} was redirected {_REDIRECTS} times in a row (MOVED/ASK); "
            "the cluster is resharding or its nodes disagree"
        )

    def info(self, section: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            (node.name, self.client.info(section, target_nodes=node))
            for node in self.client.get_primaries()
        ]
