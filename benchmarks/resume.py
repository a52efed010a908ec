"""Resume speed: how long from ``resume()`` to the first task body it runs.

A run maps over ``--items`` items (100,000 by default: about 300k events) and is
interrupted near its end: a body raises KeyboardInterrupt, which statecore re-raises,
leaving that task Running in the log (as a killed process would). Then ``resume`` is
called and the time until the first body starts is measured, split into the replay of
the log and the rest (decide over every task, the interruption event, lease).

    python benchmarks/resume.py [--items 100000] [--repeat 3] [--store sqlite]

Target (issue 5): the first new task starts within 1 s of ``resume`` for a 100,000-task
run; DBOS took about 1.1 s from restart to its first resumed step on this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.workloads import StoreFactory  # noqa: E402
from statecore import Flow, context, task  # noqa: E402
from statecore.runners import LocalRunner, replay, resume  # noqa: E402

FIRST_BODY: list[tuple[float, float]] = []
STOP_AT: list[int] = []


@task
def work(x: int) -> int:
    if not FIRST_BODY:
        FIRST_BODY.append((time.perf_counter(), time.process_time()))
    if STOP_AT and context["map_index"] == STOP_AT[0]:
        STOP_AT.clear()
        raise KeyboardInterrupt
    return x + 1


def build(items: int) -> Flow:
    with Flow("bench-resume") as flow:
        work.map(list(range(items)))
    return flow


def measure(kind: str, items: int) -> tuple[int, float, float, float]:
    flow = build(items)
    factory = StoreFactory(kind)
    try:
        with factory.fresh() as store:
            STOP_AT[:] = [items - 10]
            with contextlib.suppress(KeyboardInterrupt):
                flow.run(store=store, run_id="resume-bench", runner=LocalRunner(max_workers=1))
            events = store.head("resume-bench")
            t0 = time.perf_counter()
            replay(store, "resume-bench")
            replayed = time.perf_counter() - t0
            FIRST_BODY.clear()
            t0, c0 = time.perf_counter(), time.process_time()
            state = resume("resume-bench", flow, store=store, runner=LocalRunner(max_workers=1))
            first, first_cpu = FIRST_BODY[0][0] - t0, FIRST_BODY[0][1] - c0
            if not state.is_successful():
                raise SystemExit(f"resumed run ended {state!r}")
            return events, replayed, first, first_cpu
    finally:
        factory.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--store", default="sqlite")
    args = parser.parse_args(argv)
    rows = [measure(args.store, args.items) for _ in range(args.repeat)]
    events = rows[0][0]
    replayed = statistics.median(r[1] for r in rows)
    first = statistics.median(r[2] for r in rows)
    first_cpu = statistics.median(r[3] for r in rows)
    print(
        f"{args.store}: {args.items:,} tasks, {events:,} events in the log; "
        f"median of {args.repeat}: replay {replayed:.2f} s, "
        f"resume -> first new task {first:.2f} s wall ({first_cpu:.2f} s CPU)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
