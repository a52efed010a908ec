"""Scale out: W3 on 2 Dask worker processes, statecore against plain ``dask.distributed``.

    python benchmarks/dask_scale.py [--items 100000] [--repeats 3] [--store sqlite]

One LocalCluster of 2 worker processes (1 thread each) is started once and shared; each
repeat runs, alternating which goes first:

* plain: ``client.map(inc, range(n))`` and one ``client.submit(sum, futures)``, the same
  graph W3 builds, with nothing durable;
* statecore: ``build_w3(n)`` through ``DaskRunner(client=client)`` on a fresh store
  (SQLite by default), every transition in the log.

It prints the median wall time per task of each and their ratio (statecore's durable
overhead; issue 14 targets <= 1.5x), the driver's peak RSS and CPU time per task, and
writes the same lines, dated, to ``benchmarks/results/dask_scale.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import datetime
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


def _scheduler_tasks(dask_scheduler: Any) -> int:
    return len(dask_scheduler.tasks)


def settle(client: Any) -> None:
    """Wait, untimed, until the scheduler has forgotten every task: releasing 100,000 keys
    takes it seconds, which must not land in the next run's time."""
    deadline = time.monotonic() + 600
    while client.run_on_scheduler(_scheduler_tasks) and time.monotonic() < deadline:
        time.sleep(0.1)


def run_plain(client: Any, n: int) -> tuple[float, float]:
    cpu = time.process_time()
    start = time.perf_counter()
    futures = client.map(_inc, range(n), pure=False)
    total = client.submit(_sum, futures, pure=False).result()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    assert total == n * (n + 1) // 2
    del futures  # released as a batch by the client (cancel() of 100,000 keys takes minutes)
    settle(client)
    return elapsed, cpu


def run_statecore(client: Any, n: int, stores: StoreFactory) -> tuple[float, float]:
    from statecore.runners import DaskRunner

    flow = build_w3(n)
    with stores.fresh() as store:
        cpu = time.process_time()
        start = time.perf_counter()
        state = flow.run(store=store, runner=DaskRunner(client=client))
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
    assert state.is_successful()
    settle(client)
    return elapsed, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store", default="sqlite", choices=("memory", "sqlite", "redis"))
    parser.add_argument("--quick", action="store_true", help="10,000 items, 1 repeat")
    parser.add_argument("--out", default=str(HERE / "results" / "dask_scale.md"))
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
    plain: list[tuple[float, float]] = []
    ours: list[tuple[float, float]] = []
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")
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
                    f"repeat {i + 1}: plain {plain[-1][0]:.1f}s, statecore {ours[-1][0]:.1f}s",
                    file=sys.stderr,
                )
    finally:
        cluster.close()
    p, s = statistics.median(t for t, _ in plain), statistics.median(t for t, _ in ours)
    p_cpu, s_cpu = statistics.median(c for _, c in plain), statistics.median(c for _, c in ours)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = os.getloadavg()
    lines = [
        f"## W3 on Dask worker processes ({started} UTC)",
        "",
        f"`python benchmarks/dask_scale.py {' '.join(sys.argv[1:])}`".replace(" `", "`"),
        "",
        f"W3 map over {n:,} items + reducer on {args.workers} worker processes (1 thread "
        f"each), median of {args.repeats} (alternating), store {args.store}, "
        f"Python {platform.python_version()}, {os.cpu_count()} cores shared with other "
        f"work, load average {load[0]:.2f} at the end.",
        "",
        "| | wall µs/task | driver CPU µs/task |",
        "|---|---:|---:|",
        f"| plain dask.distributed | {p / tasks * 1e6:.1f} | {p_cpu / tasks * 1e6:.1f} |",
        f"| statecore DaskRunner | {s / tasks * 1e6:.1f} | {s_cpu / tasks * 1e6:.1f} |",
        f"| ratio statecore / plain | {s / p:.2f}x | {s_cpu / p_cpu:.2f}x |",
        "",
        f"Driver peak RSS {rss:.0f} MB (both, one process).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
