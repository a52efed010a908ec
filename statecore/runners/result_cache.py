"""The result cache of ``cache_for`` tasks, kept in the store and shared by runs.

Entries are keyed by the task's ``cache_key``, else by ``flow name:task key``. As in
Prefect 1, a run reads the candidates once when it starts (oldest first: the first valid
one wins) and writes its own new cached results when it ends, in task and map-index
order, so the mapped children of one run never reuse each other's results.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from statecore.backends.base import Store
from statecore.errors import SerializationError
from statecore.graph import Graph
from statecore.runners.encryption import current_key, find_encrypted, seal
from statecore.serialization import packb, take_opened, unpackb
from statecore.states import Cached

__all__ = ["ResultCache"]


class ResultCache:
    """One run's view of the store's result cache.

    Args:
        store: where entries live.
        graph: the run's compiled flow.
        holds_secret: True when a value holds a secret known to the run; such results
            stay out of the cache, which outlives the run and is shared.
    """

    def __init__(self, store: Store, graph: Graph, holds_secret: Callable[[object], bool]) -> None:
        self.store = store
        self.graph = graph
        self.holds_secret = holds_secret
        #: candidates per task index, for ``decide``
        self.candidates: dict[int, list[Cached]] = {}
        self._fresh: list[tuple[int, int, Cached]] = []

    def key(self, node: int) -> str:
        """The store key of a task's entries."""
        n = self.graph.nodes[node]
        return n.cache_key or f"{self.graph.flow_name}:{n.key}"

    def load(self, now: int) -> None:
        """Read the unexpired candidates of every ``cache_for`` task."""
        for node in self.graph.nodes:
            if node.cache_for_ns is None:
                continue
            found: list[Cached] = []
            mine = ("cache", self.key(node.index))
            for entry in self.store.cache_get(self.key(node.index), now=now):
                take_opened()
                try:
                    message, result, inputs, params, expires = unpackb(entry.payload)
                except Exception:
                    continue  # an entry this statecore cannot read is no candidate
                if any(origin != mine for origin in take_opened()):
                    continue  # sealed for another task's entries: moved, no candidate
                if find_encrypted([result, inputs, params]) is not None:
                    continue  # sealed with a key this process does not have
                found.append(Cached(message, result, inputs, params, expires))
            found.reverse()
            self.candidates[node.index] = found

    def add(self, node: int, index: int | None, state: Cached) -> None:
        """Remember a result this run cached, to be written when the run ends."""
        self._fresh.append((node, -1 if index is None else index, state))

    def write(self) -> list[str]:
        """Write this run's new entries; return the keys of tasks left out for a secret."""
        skipped: list[str] = []
        # with STATECORE_ENCRYPTION_KEY set the cache holds no result in clear either
        key = current_key() if self._fresh else None
        for node, _, state in sorted(self._fresh, key=lambda item: item[:2]):
            spec = self.graph.nodes[node]
            if not spec.checkpoint or spec.is_secret:
                continue  # only results the log stores are cached
            parts: tuple[Any, ...] = (state.result, state.cached_inputs, state.cached_parameters)
            if any(self.holds_secret(part) for part in parts):
                skipped.append(spec.key)
                continue
            try:
                if key is not None:
                    origin = ("cache", self.key(node))
                    parts = tuple(seal(part, key, origin) for part in parts)
                payload = packb([state.message, *parts, state.cached_result_expiration])
            except SerializationError:
                continue
            expires = state.cached_result_expiration or 0
            self.store.cache_put(self.key(node), payload, expires=expires)
        self._fresh.clear()
        return skipped
