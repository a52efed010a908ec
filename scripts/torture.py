"""Torture soaks: SIGKILLs, racing resumers and concurrent appenders, with the figures
RELIABILITY.md quotes. Run from the repository root::

    python scripts/torture.py kill --rounds 200           # per target (3 targets)
    python scripts/torture.py kill --rounds 50 --flow wide --target sqlite
    python scripts/torture.py race --rounds 20            # 8 resumers per round, SQLite and Redis
    python scripts/torture.py stale --rounds 5            # resumers held before the lease
    python scripts/torture.py append --rounds 3           # 8 appenders per round

Redis rounds use a redis-server of the script's own (AOF on, ``appendfsync always``, a
free port, a temp dir), stopped at the end. Every round prints nothing unless it broke a
promise; the summary says tried / survived / lost, and for kills the cost of the group
commit window (the most ended bodies that ran again after one crash, and how long
before the kill the oldest of them had ended). Exit status 1 if any round broke one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.torture.harness import (
    TARGETS,
    WINDOW_EVENTS,
    WINDOW_SECONDS,
    RedisServer,
    Round,
    kill_round,
)
from tests.torture.races import (
    many_appenders,
    new_run_twice,
    resume_race,
    stale_resumer,
)


def _url(store: str, workdir: Path, redis: RedisServer) -> str:
    if store == "sqlite":
        return f"sqlite:///{workdir / 'runs.db'}"
    import uuid

    return redis.url(f"torture-{uuid.uuid4().hex[:12]}")


def kill(args: argparse.Namespace, redis: RedisServer) -> int:
    targets = args.target or list(TARGETS)
    failed = 0
    for target in targets:
        rounds: list[Round] = []
        for seed in range(args.seed, args.seed + args.rounds):
            with tempfile.TemporaryDirectory(prefix="torture-") as tmp:
                result = kill_round(
                    target, seed, Path(tmp), redis if target == "redis-aof" else None, args.flow
                )
            rounds.append(result)
            if result.problems:
                print(f"{target} seed {seed}: {result.problems}", flush=True)
        bad = [r for r in rounds if r.problems]
        failed += len(bad)
        killed = sum(r.killed for r in rounds)
        worst = max(rounds, key=lambda r: r.reran_ended)
        print(
            f"kill {target} flow={args.flow}: tried {len(rounds)} ({killed} killed mid-run),"
            f" survived {len(rounds) - len(bad)}, lost events"
            f" {sum(r.lost_events for r in rounds)}, logged successes re-run"
            f" {sum(len(r.reran_successes) for r in rounds)}; ended bodies re-run per crash:"
            f" max {worst.reran_ended} (oldest ended {worst.reran_ended_age * 1000:.1f} ms"
            f" before the kill), mean {sum(r.reran_ended for r in rounds) / len(rounds):.2f};"
            f" oldest re-run body of any round ended"
            f" {max(r.reran_ended_age for r in rounds) * 1000:.1f} ms before its kill"
            f" (window: {WINDOW_EVENTS} events or {WINDOW_SECONDS * 1000:.0f} ms)",
            flush=True,
        )
    return failed


def _each_store(
    name: str,
    args: argparse.Namespace,
    redis: RedisServer,
    one: Callable[[str, Path, int], list[str]],
) -> int:
    failed = 0
    for store in args.store or ["sqlite", "redis"]:
        bad = 0
        for n in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="torture-") as tmp:
                problems = one(_url(store, Path(tmp), redis), Path(tmp), n)
            if problems:
                bad += 1
                print(f"{name} {store} round {n}: {problems}", flush=True)
        print(f"{name} {store}: tried {args.rounds}, survived {args.rounds - bad}", flush=True)
        failed += bad
    return failed


def race(args: argparse.Namespace, redis: RedisServer) -> int:
    def one(url: str, tmp: Path, n: int) -> list[str]:
        result = resume_race(url, tmp, n)
        if (result.drivers, result.refused) != (1, 7):
            result.problems.append(f"{result.drivers} drove, {result.refused} refused")
        if result.named_dead:
            print(f"race round {n}: {result.named_dead} refusals named the dead holder")
        return result.problems

    return _each_store("race (8 resumers)", args, redis, one)


def stale(args: argparse.Namespace, redis: RedisServer) -> int:
    def one(url: str, tmp: Path, n: int) -> list[str]:
        problems: list[str] = []
        for mode in ("resume", "run"):
            for progress in ("finish", "gate"):
                sub = tmp / f"{mode}-{progress}"
                sub.mkdir()
                problems += stale_resumer(
                    url.replace("runs.db", f"{mode}-{progress}.db"), sub, mode, progress
                )
        for finishes in (True, False):
            sub = tmp / f"twice-{finishes}"
            sub.mkdir()
            problems += new_run_twice(url.replace("runs.db", f"twice-{finishes}.db"), sub, finishes)
        return problems

    return _each_store("stale resumers (6 cases)", args, redis, one)


def append(args: argparse.Namespace, redis: RedisServer) -> int:
    return _each_store(
        "append (8 processes x 200 tasks)",
        args,
        redis,
        lambda url, tmp, n: many_appenders(url, tmp, f"soak{n}"),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    k = sub.add_parser("kill", help="SIGKILL a driver at random points, then resume")
    k.add_argument("--rounds", type=int, default=200, help="rounds per target")
    k.add_argument("--seed", type=int, default=0, help="first seed")
    k.add_argument("--target", action="append", choices=TARGETS)
    k.add_argument("--flow", choices=("torture", "wide"), default="torture")
    for name, default in (("race", 20), ("stale", 5), ("append", 3)):
        p = sub.add_parser(name)
        p.add_argument("--rounds", type=int, default=default, help="rounds per store")
        p.add_argument("--store", action="append", choices=("sqlite", "redis"))
    args = parser.parse_args(argv)
    commands = {"kill": kill, "race": race, "stale": stale, "append": append}
    redis = RedisServer()
    try:
        failed = commands[args.command](args, redis)
    finally:
        redis.stop()
    print("FAILED rounds:", failed if failed else "none")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
