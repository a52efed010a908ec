"""One workload on one peer engine, run by that peer's own virtual environment (see peers.py).

    <venv>/bin/python benchmarks/peer_side.py PEER WORKLOAD N

PEER is prefect1, prefect3, dbos or dask; WORKLOAD is W1, W2 or W3 (as in workloads.py:
W1 a chain of N, W2 N independent tasks and a reducer, W3 a map over N items and a
reducer; DBOS runs W1 only, as N sequential durable steps of one workflow). This file
imports nothing from statecore: it runs under the peer's interpreter and packages.

It builds and runs the workload once at a small size (untimed: imports, a local server,
first connections), then once at size N, timing the run whole, and prints one JSON line:
seconds, the tasks a user wrote (W1 N, W2 and W3 N + 1), the process's peak RSS and the
its child processes' (Prefect 3's temporary API server runs in one).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

WARM_N = 20


def _inc(x: int) -> int:
    return x + 1


def _reduce_all(xs: list[int]) -> int:
    return sum(xs)


def _expected(workload: str, n: int) -> int:
    return n if workload == "W1" else n * (n + 1) // 2


def prefect1(workload: str) -> Callable[[int], int]:
    """Prefect Core 1.4.1: a Flow built with the functional API, ``flow.run()`` (its
    LocalExecutor, the default)."""
    from prefect import Flow, task

    inc, reduce_all = task(_inc), task(_reduce_all)

    def run(n: int) -> int:
        with Flow(f"bench-{workload}") as flow:
            if workload == "W1":
                out = inc(0)
                for _ in range(n - 1):
                    out = inc(out)
            elif workload == "W2":
                out = reduce_all([inc(i) for i in range(n)])
            else:
                out = reduce_all(inc.map(list(range(n))))
        state = flow.run()
        assert state.is_successful(), state
        return int(state.result[out].result)

    return run


def prefect3(workload: str) -> Callable[[int], int]:
    """Prefect 3: a ``@flow`` calling ``@task``s, its defaults (ThreadPoolTaskRunner,
    the temporary local API server it starts when no API URL is set)."""
    from prefect import flow, task

    inc, reduce_all = task(_inc), task(_reduce_all)

    @flow(name=f"bench-{workload}")
    def bench(n: int) -> int:
        if workload == "W1":
            x = 0
            for _ in range(n):
                x = inc(x)
            return x
        if workload == "W2":
            return reduce_all([inc.submit(i) for i in range(n)])  # type: ignore[no-any-return]
        return reduce_all(inc.map(list(range(n))))  # type: ignore[no-any-return]

    return lambda n: int(bench(n))


def dbos(workload: str) -> Callable[[int], int]:
    """DBOS: one ``@DBOS.workflow`` running N ``@DBOS.step``s in sequence, each step's
    output checkpointed in its default system database (SQLite in the working folder)."""
    if workload != "W1":
        raise SystemExit("dbos runs W1 only (sequential durable steps)")
    from dbos import DBOS

    os.chdir(tempfile.mkdtemp(prefix="statecore-peer-dbos-"))
    DBOS(config={"name": "statecore_bench"})
    inc = DBOS.step()(_inc)

    @DBOS.workflow()
    def chain(n: int) -> int:
        x = 0
        for _ in range(n):
            x = inc(x)
        return x

    DBOS.launch()
    return chain


def dask(workload: str) -> Callable[[int], int]:
    """dask.distributed, not durable: a ``Client`` on an in-process LocalCluster of threads
    (the same execution model as statecore's LocalRunner), futures for the graph."""
    import distributed

    cluster = distributed.LocalCluster(processes=False, dashboard_address=None)
    client = distributed.Client(cluster)

    def run(n: int) -> int:
        if workload == "W1":
            out = client.submit(_inc, 0, pure=False)
            for _ in range(n - 1):
                out = client.submit(_inc, out, pure=False)
            return int(out.result())
        if workload == "W2":
            futures = [client.submit(_inc, i, pure=False) for i in range(n)]
        else:
            futures = client.map(_inc, range(n), pure=False)
        return int(client.submit(_reduce_all, futures, pure=False).result())

    return run


PEERS: dict[str, Callable[[str], Callable[[int], int]]] = {
    "prefect1": prefect1,
    "prefect3": prefect3,
    "dbos": dbos,
    "dask": dask,
}


def _rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def _descendants() -> set[int]:
    """This process's live descendants (Linux ``/proc``; none elsewhere)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    mine, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - mine
        mine |= frontier
    return mine


def _peak_mb(pids: set[int]) -> float:
    """The summed peak RSS of ``pids``, such as Prefect 3's temporary API server, which
    ``RUSAGE_CHILDREN`` does not count until it has been waited for."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def main(argv: list[str]) -> int:
    peer, workload, n = argv[0], argv[1], int(argv[2])
    run = PEERS[peer](workload)
    assert run(WARM_N) == _expected(workload, WARM_N)
    start = time.perf_counter()
    result = run(n)
    seconds = time.perf_counter() - start
    assert result == _expected(workload, n), result
    helpers = _descendants()
    record: dict[str, Any] = {
        "seconds": seconds,
        "tasks": n if workload == "W1" else n + 1,
        "peak_rss_mb": _rss_mb(resource.RUSAGE_SELF),
        "child_peak_rss_mb": max(_rss_mb(resource.RUSAGE_CHILDREN), _peak_mb(helpers)),
    }
    for pid in helpers:  # Prefect 3's server outlives its client otherwise
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    print("\n" + json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
