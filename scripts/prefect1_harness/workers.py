"""Dask worker processes for the ``mproc`` executor fixture: ``prefect`` served there too."""

from __future__ import annotations

import sys
from typing import Any

from distributed import WorkerPlugin


class WorkerSetup(WorkerPlugin):
    """Serves ``prefect`` (and the harness's placeholders) in each Dask worker process.

    A task body defined in a Prefect test module reaches a worker by reference (module and
    name), so the worker imports that module, and with it ``prefect``. Without this the
    unpickling fails, the worker drops its scheduler connection, and the run waits for
    workers that never come back (each ``mproc`` test then hung until pytest's timeout).
    ``paths`` are the pytest process's import roots (the copied ``tests`` package's parent),
    which a spawned worker does not inherit.
    """

    name = "prefect1-harness"

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def setup(self, worker: Any) -> None:
        for path in reversed(self.paths):
            if path not in sys.path:
                sys.path.insert(0, path)
        if "prefect" not in sys.modules:
            from prefect1_harness.plugin import serve_prefect

            serve_prefect()
