"""statecore benchmarks: one command, side-by-side numbers.

    python benchmarks/run.py [--quick] [--stores memory,sqlite,redis] [--repeat N]

For each workload (W1 chain, W2 fan-in, W3 map; see ``workloads.py``) and store, a fresh
subprocess builds the flow once (untimed), runs it once to warm up (untimed: lazy imports
and first connections; its time is shown apart), then N times, each time on a fresh
store (a new SQLite file, a Redis key prefix of its own), timing ``flow.run`` whole, including
its final commit. It reports the median µs per task (wall clock; also the minimum and the
median CPU time of the process, which other load on the machine disturbs less) and the
subprocess's peak RSS.

Baselines measured in the same invocation, for scale:

* a bare ``ThreadPoolExecutor`` ``submit(...).result()`` round trip;
* a minimal SQLite group-commit loop: 2 rows per "task" (Running, Success), committed in
  transactions of 512 rows, WAL, ``synchronous=NORMAL``: what a durable engine cannot beat;
* with Redis, its own floor: 2 ``XADD`` entries per task sent in pipelines of 512.

Redis: if no server answers at ``$STATECORE_BENCH_REDIS_URL`` (default
``redis://127.0.0.1:6379/14``) one is started (``--save '' --appendonly no``); each run
writes under a key prefix of its own, deleted after it (nothing else in the db is touched).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from workloads import REDIS_URL, STORES, WORKLOADS, StoreFactory, ensure_redis  # noqa: E402


def peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


# -- one workload on one store, in its own process ----------------------------------------


def child(workload: str, store: str, repeat: int, quick: bool) -> dict[str, Any]:
    from statecore.runners.local import LocalRunner

    wl = WORKLOADS[workload]
    flow = wl.build(wl.size(quick))
    rss_built = peak_rss_mb()
    factory = StoreFactory(store)
    times: list[float] = []
    cpu: list[float] = []  # this process's CPU time (all threads): less sensitive to noise
    events = 0
    try:
        # One untimed warm-up run: the first flow.run of a process pays one-off costs
        # (lazy imports, first connections) that are not per-task costs. Reported apart.
        with factory.fresh() as s:
            t0 = time.perf_counter()
            flow.run(store=s, runner=LocalRunner())
            warmup = time.perf_counter() - t0
        for _ in range(repeat):
            with factory.fresh() as s:
                runner = LocalRunner()
                c0 = time.process_time()
                t0 = time.perf_counter()
                state = flow.run(store=s, runner=runner)
                elapsed = time.perf_counter() - t0
                cpu.append(time.process_time() - c0)
                if not state.is_successful():
                    raise SystemExit(f"{workload} on {store} did not succeed: {state!r}")
                events = s.head(state.run_id)  # type: ignore[attr-defined]
                times.append(elapsed)
    finally:
        factory.cleanup()
    tasks = wl.tasks(quick)
    return {
        "workload": workload,
        "store": store,
        "tasks": tasks,
        "events": events,
        "seconds": times,
        "us_per_task": [t / tasks * 1e6 for t in times],
        "median_us_per_task": statistics.median(t / tasks * 1e6 for t in times),
        "min_us_per_task": min(t / tasks * 1e6 for t in times),
        "median_cpu_us_per_task": statistics.median(t / tasks * 1e6 for t in cpu),
        "warmup_seconds": warmup,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_build_mb": rss_built,
    }


def run_child(workload: str, store: str, repeat: int, quick: bool) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        workload,
        "--stores",
        store,
        "--repeat",
        str(repeat),
    ]
    if quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{workload} on {store} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- baselines ----------------------------------------------------------------------------


def _noop(x: int) -> int:
    return x + 1


def baseline_thread_pool(n: int, repeat: int) -> float:
    """Median µs of one ``submit(f, x).result()`` round trip on an 8-thread pool."""
    samples = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        pool.submit(_noop, 0).result()
        for _ in range(repeat):
            t0 = time.perf_counter()
            for i in range(n):
                pool.submit(_noop, i).result()
            samples.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(samples)


def baseline_sqlite_group_commit(n_tasks: int, repeat: int, group: int = 512) -> float:
    """Median µs per task of the minimal durable loop: 2 rows a task, 512 rows a commit."""
    samples = []
    payload = b"\x9a\x01\xa3inc\xc0\xa7Running\xa7Success\x01\xc0\x02\xc3\xc0"
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="statecore-bench-") as d:
            conn = sqlite3.connect(os.path.join(d, "loop.db"), isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(
                "CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, "
                "payload BLOB NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID"
            )
            insert = "INSERT INTO events (run_id, seq, payload) VALUES (?, ?, ?)"
            t0 = time.perf_counter()
            buffer: list[tuple[str, int, bytes]] = []
            seq = 0
            for _task in range(n_tasks):
                for _state in range(2):
                    seq += 1
                    buffer.append(("run", seq, payload))
                if len(buffer) >= group:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany(insert, buffer)
                    conn.execute("COMMIT")
                    buffer = []
            if buffer:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(insert, buffer)
                conn.execute("COMMIT")
            samples.append((time.perf_counter() - t0) / n_tasks * 1e6)
            conn.close()
    return statistics.median(samples)


def baseline_redis_pipeline(n_tasks: int, repeat: int, group: int = 512) -> float:
    """Median µs per task of the minimal Redis log: 2 ``XADD`` entries a task (explicit
    ids, one payload field) to one stream, sent in pipelines of 512: what the Redis store
    cannot beat. It writes under a key of its own, deleted after each run."""
    import redis

    payload = b"\x9a\x01\xa3inc\xc0\xa7Running\xa7Success\x01\xc0\x02\xc3\xc0"
    key = f"statecore-bench-floor-{os.getpid()}"
    client = redis.Redis.from_url(REDIS_URL)
    samples = []
    try:
        for _ in range(repeat):
            client.delete(key)
            t0 = time.perf_counter()
            pipe = client.pipeline(transaction=False)
            seq = 0
            for _task in range(n_tasks):
                for _state in range(2):
                    seq += 1
                    pipe.execute_command("XADD", key, f"0-{seq}", "p", payload)
                if len(pipe) >= group:
                    pipe.execute()
            pipe.execute()
            samples.append((time.perf_counter() - t0) / n_tasks * 1e6)
    finally:
        client.delete(key)
        client.close()
    return statistics.median(samples)


# -- the report ---------------------------------------------------------------------------


def markdown_table(results: list[dict[str, Any]], stores: list[str]) -> str:
    head = "| workload | tasks |" + "".join(f" {s} µs/task | {s} peak RSS MB |" for s in stores)
    rule = "|---|---:|" + "---:|---:|" * len(stores)
    lines = [head, rule]
    by_key = {(r["workload"], r["store"]): r for r in results}
    for name, wl in WORKLOADS.items():
        row = [r for r in results if r["workload"] == name]
        if not row:
            continue
        cells = [f"{name}: {wl.title(row[0]['tasks'])}", f"{row[0]['tasks']:,}"]
        for s in stores:
            r = by_key.get((name, s))
            if r is None:
                cells += ["-", "-"]
            else:
                cells += [f"{r['median_us_per_task']:.1f}", f"{r['peak_rss_mb']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller workloads (W1/W2 200, W3 2,000)"
    )
    parser.add_argument(
        "--stores",
        default="memory,sqlite,redis",
        help="comma-separated: memory,sqlite,redis (default: all three)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs per workload and store")
    parser.add_argument("--workloads", default="W1,W2,W3", help="comma-separated subset")
    parser.add_argument("--json", metavar="FILE", help="also write raw results here")
    parser.add_argument("--child", metavar="WORKLOAD", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    for s in stores:
        if s not in STORES:
            parser.error(f"unknown store {s!r}; choose from {', '.join(STORES)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    if args.child:
        print(json.dumps(child(args.child, stores[0], args.repeat, args.quick)))
        return 0

    if "redis" in stores:
        why = ensure_redis()
        if why is not None:
            print(f"skipping redis: {why}", file=sys.stderr)
            stores.remove("redis")

    print(
        f"# statecore benchmarks ({'quick' if args.quick else 'full'}, "
        f"median of {args.repeat} runs)"
    )
    print(
        f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )
    pool_us = baseline_thread_pool(5_000 if args.quick else 20_000, args.repeat)
    loop_us = baseline_sqlite_group_commit(10_000 if args.quick else 100_000, args.repeat)
    print(f"baseline: ThreadPoolExecutor submit+result round trip: {pool_us:.1f} µs")
    if "redis" in stores:
        redis_us = baseline_redis_pipeline(10_000 if args.quick else 50_000, args.repeat)
        print(
            f"baseline: minimal Redis log (2 XADD/task, pipelines of 512): {redis_us:.2f} µs/task"
        )
    print(
        f"baseline: minimal SQLite group-commit loop (2 rows/task, 512 rows/txn): "
        f"{loop_us:.2f} µs/task"
    )
    print()

    results = []
    for name in [w.strip() for w in args.workloads.split(",") if w.strip()]:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}")
        for s in stores:
            r = run_child(name, s, args.repeat, args.quick)
            results.append(r)
            spread = ", ".join(f"{x:.1f}" for x in r["us_per_task"])
            print(
                f"{name} {s:<7} median {r['median_us_per_task']:7.1f} µs/task "
                f"(min {r['min_us_per_task']:.1f}, CPU {r['median_cpu_us_per_task']:.1f})  "
                f"peak RSS {r['peak_rss_mb']:.0f} MB (after build {r['rss_after_build_mb']:.0f})"
                f"  {r['events']} events; warm-up {r['warmup_seconds'] * 1e3:.0f} ms; "
                f"runs: {spread}",
                flush=True,
            )
    print()
    print(markdown_table(results, stores))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "baseline_pool_us": pool_us,
                    "baseline_sqlite_loop_us": loop_us,
                    "results": results,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
