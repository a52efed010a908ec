"""How many rows the replay fold decodes per msgpack call: replay against the yardstick.

    python benchmarks/fold_chunk.py [--items 15000] [--rounds 15] [--chunks 4096,1024,256,128]

A W3 log (``.map`` over ``--items`` items + a reducer, about 2 events per item) is written
to a SQLite store once. Each round then replays it (``statecore.runners.replay``) once per
chunk size, in turn, each replay followed by ``store_throughput.py``'s yardstick over the
same file, so each figure is replay's share of a yardstick timed beside it (the host's
speed moves between rounds; the share does not move with it). Medians over the rounds.

The fold decodes a chunk of rows in one msgpack call (``statecore.fold._CHUNK``): a
bigger chunk makes fewer calls, a smaller one keeps the objects the call made in the CPU's
cache while the loop reads them. On 2026-12-07 (2 cores) 256 rows beat 4,096 in each of
four runs, its share of the yardstick 2-7% higher (README, Speed).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from store_throughput import real_log, yardstick  # noqa: E402

import statecore.fold  # noqa: E402
from statecore.backends.sqlite import SQLiteStore  # noqa: E402
from statecore.runners.local import collector_paused, replay  # noqa: E402


def timed(work: Callable[[], object]) -> float:
    with collector_paused():
        t0 = time.perf_counter()
        work()
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=15_000, help="W3 size that makes the log")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--chunks", default="4096,1024,256,128", help="chunk sizes to compare")
    args = parser.parse_args(argv)
    chunks = [int(c) for c in args.chunks.split(",") if c.strip()]
    if not chunks or min(chunks) < 1:
        parser.error("--chunks: positive row counts, comma-separated")
    shipped = statecore.fold._CHUNK
    run_id, events = real_log(args.items)
    n = len(events)
    shares: dict[int, list[float]] = {c: [] for c in chunks}
    rates: dict[int, list[float]] = {c: [] for c in chunks}
    with tempfile.TemporaryDirectory(prefix="statecore-fold-chunk-") as tmp:
        path = str(Path(tmp) / "log.db")
        with closing(SQLiteStore(path)) as store, closing(sqlite3.connect(path)) as conn:
            store.append(run_id, events, expected_seq=0)
            try:
                for _ in range(args.rounds):
                    for chunk in chunks:
                        statecore.fold._CHUNK = chunk
                        took = timed(lambda: replay(store, run_id))
                        floor = timed(lambda: yardstick(conn, run_id))
                        shares[chunk].append(floor / took)
                        rates[chunk].append(n / took)
            finally:
                statecore.fold._CHUNK = shipped
    print(
        f"W3 log of {n:,} events in SQLite; median of {args.rounds} rounds, chunk sizes in turn; "
        f"shipped chunk: {shipped}"
    )
    print()
    print("| rows per msgpack call | replay events/s | replay's share of the yardstick |")
    print("|---:|---:|---:|")
    for chunk in chunks:
        print(
            f"| {chunk:,} | {statistics.median(rates[chunk]):,.0f} "
            f"| {statistics.median(shares[chunk]):.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
