"""``DaskRunner``: task bodies on a ``dask.distributed`` cluster.

Only the driver, which holds the run's lease, appends events: workers run attempts
(:func:`~statecore.runners.execution.run_remote`), each a future of its own, and each
outcome comes back with the body's measured times and log lines as soon as it ends.
Parameters and secrets are resolved by the driver, so a
secret's value travels to a worker only as an input of the task that uses it.

Use it with a shared store (Redis) to run one flow across machines::

    from statecore.runners.dask import DaskRunner
    flow.run(store="redis://10.0.0.5:6379/0", runner=DaskRunner("tcp://10.0.0.5:8786"))

Requires the ``dask`` extra: ``pip install 'statecore[dask]'``.
"""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from statecore.errors import ClusterUnavailable
from statecore.runners.execution import (
    Attempt,
    Done,
    Executor,
    Outcome,
    RunLogger,
    drain,
    run_remote,
)

__all__ = ["DaskRunner"]


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "DaskRunner needs dask.distributed: pip install 'statecore[dask]'"
        ) from exc
    return distributed


class DaskRunner:
    """Runs task bodies on a ``dask.distributed`` cluster.

    Args:
        address: a scheduler address (``tcp://host:8786``); None starts a
            ``distributed.LocalCluster`` of worker processes for the run and closes it at
            the end (``cluster_kwargs={"processes": False}`` asks for threads instead).
            With processes, task bodies and their inputs and results must be picklable
            by cloudpickle (module-level functions are sent by reference; lambdas and
            closures by value).
        client: an existing ``distributed.Client`` to use instead (left open).
        connect_timeout: seconds to reach ``address`` before giving up.
        cluster_kwargs: options for the temporary ``LocalCluster`` (``n_workers``,
            ``threads_per_worker``, ``processes``, ...); they override the defaults
            ``processes=True, dashboard_address=None``.
        single_pass, group_events, group_delay, lease_ttl, lease_renew: as for
            :class:`~statecore.runners.local.LocalRunner`.
    """

    #: user code never runs in the driver: even a lone ready task goes to a worker
    inline_when_alone = False

    def __init__(
        self,
        address: str | None = None,
        *,
        client: Any = None,
        connect_timeout: float = 10.0,
        cluster_kwargs: dict[str, Any] | None = None,
        single_pass: bool = False,
        group_events: int = 512,
        group_delay: float = 0.02,
        lease_ttl: float = 15.0,
        lease_renew: float = 5.0,
    ) -> None:
        _distributed()
        self.address = address
        self.client = client
        self.connect_timeout = connect_timeout
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.single_pass = single_pass
        self.group_events = group_events
        self.group_delay = group_delay
        self.lease_ttl = lease_ttl
        self.lease_renew = lease_renew
        self.max_workers = 0

    def make_executor(self, logger: RunLogger, resolve_secret: Callable[[str], Any]) -> Executor:
        """Connect to (or start) the cluster for one run."""
        distributed = _distributed()
        cluster = None
        client = self.client
        if client is None and self.address is not None:
            try:
                client = distributed.Client(self.address, timeout=self.connect_timeout)
            except (OSError, TimeoutError) as exc:
                raise ClusterUnavailable(
                    f"cannot reach the Dask scheduler at {self.address}: {exc}"
                ) from exc
        elif client is None:
            # worker processes by default, as Prefect 1's DaskExecutor: user code runs
            # outside the driver and one body's GIL or crash does not stall the others
            options = {"processes": True, "dashboard_address": None, **self.cluster_kwargs}
            cluster = distributed.LocalCluster(**options)
            client = distributed.Client(cluster)
        executor = _DaskExecutor(client, owned=self.client is None, cluster=cluster)
        self.max_workers = executor.workers
        return executor


class _DaskExecutor:
    """One ``distributed`` future per attempt; each reports back as it ends.

    A future's done-callback only queues the future; the driver's :meth:`completed`
    fetches the results of every future that has finished with one ``client.gather``
    (one request to each worker that holds some), rather than one round trip per
    future, which on a 10,000-task map was most of the scheduler's and client's work.
    A future that failed (its worker died past Dask's ``allowed-failures``, or it was
    cancelled), or a batch whose gather fails, is read one by one: its exception is the
    attempt's outcome.
    """

    def __init__(self, client: Any, *, owned: bool, cluster: Any) -> None:
        self._client = client
        self._owned = owned
        self._cluster = cluster
        self._ended: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        self._futures: dict[int, Any] = {}
        threads = client.nthreads()
        self.workers = max(1, sum(threads.values()) if threads else 1)

    def submit(self, batch: Sequence[tuple[int, Attempt]]) -> None:
        tokens = [token for token, _ in batch]
        futures = self._client.map(
            run_remote,
            [attempt for _, attempt in batch],
            pure=False,
            key=[f"statecore-{uuid.uuid4().hex}" for _ in batch],
        )
        ended = self._ended.put
        for token, future in zip(tokens, futures, strict=True):
            self._futures[token] = future
            # runs on the client's thread when the future ends: hand it to the driver
            future.add_done_callback(lambda f, t=token: ended((t, f)))

    def completed(self, timeout: float) -> list[Done]:
        ended = drain(self._ended, timeout)
        if not ended:
            return []
        finished = [(t, f) for t, f in ended if f.status == "finished"]
        results: dict[int, tuple[Outcome, Sequence[Any]]] = {}
        if finished:
            try:
                values = self._client.gather([f for _, f in finished])
            except Exception:  # read them one by one below
                values = None
            if values is not None:
                results = {t: v for (t, _), v in zip(finished, values, strict=True)}
        done: list[Done] = []
        for token, future in ended:
            self._futures.pop(token, None)
            got = results.get(token)
            if got is None:
                got = _one(future)
            done.append((token, got[0], got[1]))
        return done

    def shutdown(self) -> None:
        for future in self._futures.values():
            future.cancel()
        self._futures.clear()
        if self._owned:
            self._client.close()
            if self._cluster is not None:
                self._cluster.close()


def _one(future: Any) -> tuple[Outcome, Sequence[Any]]:
    """One future's outcome and lines; its exception if it failed (the worker died, or
    the task was lost or cancelled)."""
    try:
        outcome, lines = future.result()
    except BaseException as exc:
        now = time.time_ns()
        return (exc, None, now, now), []
    return outcome, lines
