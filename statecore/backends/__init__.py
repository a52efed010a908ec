"""Stores for run logs: memory, SQLite (the embedded default) and Redis."""

from __future__ import annotations

from statecore.backends.base import CacheEntry, Lease, RunMeta, Store
from statecore.backends.memory import MemoryStore

__all__ = ["CacheEntry", "Lease", "MemoryStore", "RunMeta", "Store"]
