"""The memory store against the store contract."""

from __future__ import annotations

from statecore.backends import MemoryStore, Store
from statecore.testing import StoreContractTests


class TestMemoryStore(StoreContractTests):
    def make_store(self) -> Store:
        return MemoryStore()
