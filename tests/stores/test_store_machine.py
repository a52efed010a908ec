"""Every store does what the reference model does, step by random step (Hypothesis).

To add a store, add one factory to ``STORES``: it gets a fresh temporary directory for
each generated example and returns a new, empty store.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from statecore.backends import MemoryStore, SQLiteStore, Store
from statecore.testing import store_state_machine
from tests.conftest import redis_store_factories

STORES: dict[str, Callable[[Path], Store]] = {
    "memory": lambda tmp: MemoryStore(),
    "sqlite": lambda tmp: SQLiteStore(tmp / "runs.db"),
    **redis_store_factories(),  # the test server's store, when one is reachable
}


def test_stores_agree_with_the_reference(tmp_path_factory: pytest.TempPathFactory) -> None:
    def make_stores() -> list[Store]:
        tmp = tmp_path_factory.mktemp("example")
        return [factory(tmp) for factory in STORES.values()]

    run_state_machine_as_test(  # type: ignore[no-untyped-call]
        store_state_machine(make_stores),
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_the_machine_catches_a_store_that_disagrees(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    class ForgetfulStore(MemoryStore):
        """Drops the last event of every batch: the machine must notice."""

        def append(self, run_id, events, **options):  # type: ignore[no-untyped-def]
            return super().append(run_id, events[:-1] if len(events) > 1 else events, **options)

    with pytest.raises(AssertionError):
        run_state_machine_as_test(  # type: ignore[no-untyped-call]
            store_state_machine(lambda: [MemoryStore(), ForgetfulStore()]),
            settings=settings(max_examples=200, deadline=None, database=None),
        )


def test_without_hypothesis_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("hypothesis", "hypothesis.stateful", "hypothesis.strategies"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install 'statecore\[testing\]'"):
        store_state_machine(list)
