"""The conftest that replaces Prefect 1.4.1's own ``tests/conftest.py`` in the temporary copy.

Prefect's conftest starts Dask clusters and sets Cloud/Server configuration; here the
``executor`` fixture gives statecore runners under Prefect's executor names instead:

- ``local``, ``sync``: :class:`statecore.runners.LocalRunner` with one worker (in order, in
  the calling thread, as Prefect's local and synchronous executors run);
- ``mthread``, ``threaded_local``: ``LocalRunner`` with four worker threads;
- ``mproc``, ``mproc_local``: :class:`statecore.runners.DaskRunner` on one session-wide
  ``distributed`` cluster of two worker processes (as Prefect's conftest shares one).

Each test's runs go to one SQLite store of its own (``STATECORE_STORE``), as a user's runs
go to the one default store of their working directory: a task cached by one
``flow.run()`` is found by the next, as Prefect 1 found it in ``prefect.context.caches``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _store_per_test(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATECORE_STORE", f"sqlite:///{tmp_path}/statecore.db")


@pytest.fixture(scope="session")
def _dask_client(request: pytest.FixtureRequest) -> Iterator[Any]:
    from distributed import Client

    from prefect1_harness.workers import WorkerSetup

    with Client(
        processes=True,
        n_workers=2,
        threads_per_worker=1,
        scheduler_port=0,
        dashboard_address=":0",
    ) as client:
        # workers import the test modules' task bodies, so they need ``prefect`` served too
        client.register_plugin(WorkerSetup([str(request.config.rootpath)]))
        yield client


@pytest.fixture()
def _switch(request: pytest.FixtureRequest) -> Callable[[str], Any]:
    from statecore.runners import DaskRunner, LocalRunner

    def make(name: str) -> Any:
        runner: Any
        if name in ("local", "sync"):
            runner = LocalRunner(max_workers=1)
        elif name in ("mthread", "threaded_local"):
            runner = LocalRunner(max_workers=4)
        elif name in ("mproc", "mproc_local"):
            runner = DaskRunner(client=request.getfixturevalue("_dask_client"))
        else:
            raise ValueError(f"unknown executor fixture {name!r}")
        # the plugin passes only these on from flow.run(executor=...) as runner=
        runner._prefect1_harness_runner = True
        return runner

    return make


@pytest.fixture()
def executor(request: pytest.FixtureRequest, _switch: Callable[[str], Any]) -> Any:
    """Prefect's parametrized ``executor`` fixture, as a statecore runner."""
    return _switch(getattr(request, "param", "local"))
