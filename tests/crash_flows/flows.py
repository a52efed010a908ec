"""Flows shared by the test process and the subprocesses it kills.

Every task body first appends one line to a side-effect file (``STATECORE_CRASH_SIDE``)
with ``write`` + ``fsync``, so the file says exactly which bodies were entered, in what
attempt, whatever happens to the process afterwards::

    <task key> <map index or -> <attempt> [<loop iteration>]

``STATECORE_CRASH_PAUSE`` (seconds, default 0.002) is how long each body then sleeps,
so that a kill lands inside bodies as well as between them. ``STATECORE_GATE`` names a
file that gated bodies wait for (see :data:`gated_flow`).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from statecore import Flow, context, signals, task

CHAIN = 20
WIDTH = 30
LOOPS = 5
FLAKY_ATTEMPTS = 3  # the flaky task fails attempts 1 and 2, succeeds on the 3rd
MAP_FLAKY_EVERY = 7  # mapped children 0, 7, 14, ... fail their first attempt

SIDE_ENV = "STATECORE_CRASH_SIDE"
PAUSE_ENV = "STATECORE_CRASH_PAUSE"
GATE_ENV = "STATECORE_GATE"


def mark(extra: str = "") -> None:
    """Append this body's line to the side-effect file, durably, in one write."""
    path = os.environ.get(SIDE_ENV)
    if not path:
        return
    index = context.get("map_index")
    line = f"{context['task_slug']} {'-' if index is None else index} {context['task_run_count']}"
    if extra:
        line += f" {extra}"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def pause() -> None:
    seconds = float(os.environ.get(PAUSE_ENV, "0.002"))
    if seconds > 0:
        time.sleep(seconds)


def read_lines(path: str | Path) -> list[tuple[str, int | None, int, str]]:
    """The side-effect file's complete lines as (key, index, attempt, extra)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # a torn last line (the writer died mid-write) is not a line
        key, index, attempt, *extra = line.split()
        out.append((key, None if index == "-" else int(index), int(attempt), " ".join(extra)))
    return out


# -- the crash flow: a chain feeding a map feeding a reducer, plus retries and a loop ----


@task
def start() -> int:
    mark()
    pause()
    return 1


@task
def step(x: int) -> int:
    mark()
    pause()
    return x + 1


@task
def spread(n: int) -> list[int]:
    mark()
    pause()
    return [n + i for i in range(WIDTH)]


@task(max_retries=1, retry_delay=timedelta(seconds=0))
def square(x: int) -> int:
    mark()
    pause()
    if context["map_index"] % MAP_FLAKY_EVERY == 0 and context["task_run_count"] == 1:
        raise ValueError(f"first attempt of child {context['map_index']} fails")
    return x * x


@task(max_retries=FLAKY_ATTEMPTS - 1, retry_delay=timedelta(seconds=0))
def flaky() -> str:
    mark()
    pause()
    if context["task_run_count"] < FLAKY_ATTEMPTS:
        raise RuntimeError(f"attempt {context['task_run_count']} fails")
    return f"ok on attempt {context['task_run_count']}"


@task
def countdown(base: int) -> int:
    iteration = context.get("task_loop_count", 1)
    mark(f"L{iteration}")
    pause()
    value = context.get("task_loop_result", base)
    if iteration < LOOPS:
        raise signals.LOOP(result=value + 10)
    return value


@task
def total(squares: list[int], note: str, looped: int) -> dict[str, Any]:
    mark()
    pause()
    return {"sum": sum(squares), "note": note, "looped": looped}


def _build_crash_flow() -> Flow:
    with Flow("crash-chain-map") as flow:
        value = start()
        for _ in range(CHAIN):
            value = step(value)
        items = spread(value)
        squares = square.map(items)
        note = flaky()
        looped = countdown(value)
        total(squares, note, looped)
    return flow


crash_flow = _build_crash_flow()


def crash_lines_total() -> int:
    """How many side-effect lines one uninterrupted run of :data:`crash_flow` writes."""
    flaky_children = len(range(0, WIDTH, MAP_FLAKY_EVERY))
    return 1 + CHAIN + 1 + WIDTH + flaky_children + FLAKY_ATTEMPTS + LOOPS + 1


# -- the gated flow: bodies wait for a file, so a driver stays alive as long as needed ---


def wait_for_gate() -> None:
    gate = os.environ.get(GATE_ENV)
    if not gate:
        return
    while not os.path.exists(gate):
        time.sleep(0.01)


@task
def gated_first() -> int:
    mark()
    wait_for_gate()
    return 1


@task
def gated_next(x: int) -> int:
    mark()
    wait_for_gate()
    return x + 1


def _build_gated_flow() -> Flow:
    with Flow("gated") as flow:
        value = gated_first()
        for _ in range(3):
            value = gated_next(value)
    return flow


gated_flow = _build_gated_flow()

# -- fast and slow children: 8 bodies of 0.1 s beside 8 of SLOW_ENV seconds (default 3) --

SLOW_ENV = "STATECORE_SLOW"
FAST_SLOW = 16


@task
def fast_or_slow(i: int) -> int:
    mark("start")
    time.sleep(0.1 if i < FAST_SLOW // 2 else float(os.environ.get(SLOW_ENV, "3")))
    mark("end")
    return i


@task
def add_up(xs: list[int]) -> int:
    return sum(xs)


with Flow("fast-slow") as fast_slow_flow:
    add_up(fast_or_slow.map(list(range(FAST_SLOW))))


FLOWS = {"crash": crash_flow, "gated": gated_flow, "fast-slow": fast_slow_flow}
