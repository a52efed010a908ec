"""Profile the runner (and replay) with cProfile, to find what to optimise.

    python benchmarks/profile_runner.py [--workloads W1,W2,W3] [--stores memory,sqlite]
                                        [--top 10] [--quick] [--replay] [--out DIR]

For each workload and store: one warm-up run, then ``--runs`` profiled ``flow.run`` calls
(default 3, each on a fresh store), aggregated. Prints the top entries by self time
(tottime) and by cumulative time, each as a share of the profiled call (flow.run, or
read + fold). ``--replay`` also profiles ``store.read`` + ``fold`` of the
run's log. ``--out`` writes each ``.pstats`` file there (open with ``snakeviz`` or
``python -m pstats``).

cProfile inflates the cost of small Python calls; use the shares to rank, and
``benchmarks/run.py`` for absolute numbers. cProfile sees only the thread that runs
``flow.run`` (the driver: fold, decide, settle, journal, store); task bodies that run on
the pool (W2, W3) are not in the profile. The default timer is that thread's CPU time
(``--timer wall`` for wall clock, which includes waiting for workers and the store).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from workloads import STORES, WORKLOADS, StoreFactory, ensure_redis  # noqa: E402

from statecore.fold import fold  # noqa: E402


def _where(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    path = Path(filename)
    try:
        rel = path.resolve().relative_to(HERE.parent)
        short = str(rel)
    except ValueError:
        short = "/".join(path.parts[-2:])
    return f"{short}:{line}({name})"


def top(stats: pstats.Stats, key: str, n: int) -> list[str]:
    raw = stats.stats  # type: ignore[attr-defined]
    # The share of the profiled call (the largest cumulative time: flow.run or fold).
    total = max(ct for (_cc, _nc, _tt, ct, _callers) in raw.values())
    rows = []
    for func, (_cc, nc, tt, ct, _callers) in raw.items():
        rows.append((tt if key == "tottime" else ct, nc, tt, ct, func))
    rows.sort(key=lambda r: r[0], reverse=True)
    out = [f"  {'self%':>6} {'cum%':>6} {'calls':>9}  function"]
    for _k, nc, tt, ct, func in rows[:n]:
        out.append(f"  {100 * tt / total:6.1f} {100 * ct / total:6.1f} {nc:9d}  {_where(func)}")
    return out


def profile_one(
    workload: str,
    store: str,
    n_top: int,
    quick: bool,
    replay: bool,
    out: Path | None,
    runs: int = 3,
    timer: str = "cpu",
) -> None:
    wl = WORKLOADS[workload]
    flow = wl.build(wl.size(quick))
    factory = StoreFactory(store)
    title = f"{workload} ({wl.title(wl.tasks(quick))}) on {store}"
    try:
        with factory.fresh() as s:
            flow.run(store=s)  # warm-up: imports, caches
        run_stats: pstats.Stats | None = None
        replay_stats: pstats.Stats | None = None
        for _ in range(runs):
            with factory.fresh() as s:
                prof = _profiler(timer)
                prof.enable()
                state = flow.run(store=s)
                prof.disable()
                run_stats = _merge(run_stats, prof)
                if replay:
                    run_id = state.run_id  # type: ignore[attr-defined]
                    prof = _profiler(timer)
                    prof.enable()
                    fold(s.read(run_id), run_id=run_id)
                    prof.disable()
                    replay_stats = _merge(replay_stats, prof)
        assert run_stats is not None
        _report(f"flow.run: {title}, {runs} runs", run_stats, n_top, cumulative=True)
        if out is not None:
            run_stats.dump_stats(str(out / f"run-{workload}-{store}.pstats"))
        if replay_stats is not None:
            _report(f"replay (read + fold): {title}", replay_stats, n_top, cumulative=False)
            if out is not None:
                replay_stats.dump_stats(str(out / f"replay-{workload}-{store}.pstats"))
        print()
    finally:
        factory.cleanup()


def _profiler(timer: str) -> cProfile.Profile:
    if timer == "cpu":
        # The profiled thread's own CPU time: other load on the machine does not inflate it.
        return cProfile.Profile(time.thread_time)
    return cProfile.Profile()


def _merge(stats: pstats.Stats | None, prof: cProfile.Profile) -> pstats.Stats:
    if stats is None:
        return pstats.Stats(prof, stream=io.StringIO())
    stats.add(prof)
    return stats


def _report(title: str, stats: pstats.Stats, n_top: int, *, cumulative: bool) -> None:
    print(f"== {title}: {stats.total_tt:.3f} s profiled")  # type: ignore[attr-defined]
    print(" top by self time:")
    print("\n".join(top(stats, "tottime", n_top)))
    if cumulative:
        print(" top by cumulative time:")
        print("\n".join(top(stats, "cumulative", n_top)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="W1,W2,W3")
    parser.add_argument("--stores", default="memory,sqlite")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=3, help="profiled runs to aggregate")
    parser.add_argument(
        "--timer",
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu: the driver thread's CPU time (default; robust to a busy machine)",
    )
    parser.add_argument("--replay", action="store_true", help="also profile read + fold")
    parser.add_argument("--out", type=Path, help="write .pstats files here")
    args = parser.parse_args(argv)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    for s in stores:
        if s not in STORES:
            parser.error(f"unknown store {s!r}")
    if "redis" in stores and (why := ensure_redis()) is not None:
        print(f"skipping redis: {why}", file=sys.stderr)
        stores.remove("redis")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    for name in [w.strip() for w in args.workloads.split(",") if w.strip()]:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}")
        for s in stores:
            profile_one(name, s, args.top, args.quick, args.replay, args.out, args.runs, args.timer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
