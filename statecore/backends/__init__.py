"""Stores for run logs: memory, SQLite (the embedded default) and Redis.

``RedisStore`` is importable from here but loaded on first use, so importing
``statecore.backends`` never imports ``redis``.
"""

from __future__ import annotations

import importlib
from typing import Any

from statecore.backends.base import CacheEntry, Lease, RunMeta, Store
from statecore.backends.memory import MemoryStore
from statecore.backends.sqlite import SQLiteStore
from statecore.backends.url import default_store_url, open_store

__all__ = [
    "CacheEntry",
    "Lease",
    "MemoryStore",
    "RunMeta",
    "SQLiteStore",
    "Store",
    "default_store_url",
    "open_store",
]


def __getattr__(name: str) -> Any:
    # Only names that need an optional dependency are resolved here, on first access.
    if name == "RedisStore":
        return importlib.import_module("statecore.backends.redis").RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "RedisStore"])
