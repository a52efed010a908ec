"""Scale out: W3 on 2 Dask worker processes, statecore against plain ``dask.distributed``.

    python benchmarks/dask_scale.py [--items 100000] [--repeats 3] [--store sqlite]

One LocalCluster of 2 worker processes (1 thread each) is started once and shared; each
repeat runs, alternating which goes first:

* plain: ``client.map(inc, range(n))`` and one ``client.submit(sum, futures)``, the same
  graph W3 builds, with nothing durable;
* statecore: ``build_w3(n)`` through ``DaskRunner(client=client)`` on a fresh store
  (SQLite by default), every transition in the log.

It prints the median wall time per task of each and their ratio (statecore's durable
overhead; issue 14 targets <= 1.5x) and the driver's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from workloads import StoreFactory, build_w3, ensure_redis  # noqa: E402


def _inc(x: int) -> int:
    return x + 1


def _sum(xs: list[int]) -> int:
    return sum(xs)


def run_plain(client: Any, n: int) -> float:
    start = time.perf_counter()
    futures = client.map(_inc, range(n), pure=False)
    total = client.submit(_sum, futures, pure=False).result()
    elapsed = time.perf_counter() - start
    assert total == n * (n + 1) // 2
    client.cancel(futures)
    return elapsed


def run_statecore(client: Any, n: int, stores: StoreFactory) -> float:
    from statecore.runners import DaskRunner

    flow = build_w3(n)
    with stores.fresh() as store:
        start = time.perf_counter()
        state = flow.run(store=store, runner=DaskRunner(client=client))
        elapsed = time.perf_counter() - start
    assert state.is_successful()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store", default="sqlite", choices=("memory", "sqlite", "redis"))
    parser.add_argument("--quick", action="store_true", help="10,000 items, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.repeats = 10_000, 1
    if args.store == "redis" and (why := ensure_redis()):
        print(f"redis: {why}", file=sys.stderr)
        return 1

    import distributed

    n, tasks = args.items, args.items + 1
    cluster = distributed.LocalCluster(
        n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    stores = StoreFactory(args.store)
    plain: list[float] = []
    ours: list[float] = []
    try:
        with distributed.Client(cluster) as client:
            run_plain(client, min(n, 1_000))  # warm: imports, first connections
            run_statecore(client, min(n, 1_000), stores)
            for i in range(args.repeats):
                order = ("plain", "statecore") if i % 2 == 0 else ("statecore", "plain")
                for which in order:
                    if which == "plain":
                        plain.append(run_plain(client, n))
                    else:
                        ours.append(run_statecore(client, n, stores))
                print(
                    f"repeat {i + 1}: plain {plain[-1]:.1f}s, statecore {ours[-1]:.1f}s",
                    file=sys.stderr,
                )
    finally:
        cluster.close()
    p, s = statistics.median(plain), statistics.median(ours)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = os.getloadavg()
    print(
        f"W3 map over {n:,} items + reducer on {args.workers} worker processes, "
        f"median of {args.repeats} (alternating), store {args.store}, "
        f"Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"load average {load[0]:.2f} at the end"
    )
    print(f"  plain dask.distributed  {p / tasks * 1e6:9.1f} µs/task")
    print(f"  statecore DaskRunner    {s / tasks * 1e6:9.1f} µs/task")
    print(f"  ratio statecore/plain   {s / p:9.2f}x   (driver peak RSS {rss:.0f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
