"""The torture flow: chains, a map with retries, a retrying task, a LOOP, a cached task and
a task paused for approval, built in an importable module so that a subprocess and the test
process compile the very same graph.

Every body first appends one line to the side-effect file named by ``STATECORE_TORTURE_SIDE``
(one ``write`` then ``fsync``) and another one when it ends, so the file says which bodies
were entered and which finished, by which process, whatever happens to it afterwards::

    <task key> <map index or -> <attempt> <pid> start|end <time ns> [L<loop iteration>]

``STATECORE_TORTURE_PAUSE`` (seconds, default 0.002) is how long each body sleeps between
its two lines, so that kills land inside bodies as well as between them;
``STATECORE_TORTURE_HOLD`` names a file each body then waits for.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from statecore import Flow, Parameter, context, signals, task, triggers
from statecore.cache_validators import all_inputs

SIDE_ENV = "STATECORE_TORTURE_SIDE"
PAUSE_ENV = "STATECORE_TORTURE_PAUSE"
#: a file that bodies wait for before they end (keeps a driver busy as long as needed)
HOLD_ENV = "STATECORE_TORTURE_HOLD"
#: if set, only the bodies of this task (its key) wait for the hold file
HOLD_KEY_ENV = "STATECORE_TORTURE_HOLD_KEY"

CHAIN = 8
WIDTH = 12
LOOPS = 4
FLAKY_ATTEMPTS = 3
MAP_FLAKY_EVERY = 5
#: the task that waits for approval (its key in the graph)
GATE_KEY = "gate-1"


@dataclass(frozen=True)
class Line:
    """One complete line of the side-effect file."""

    key: str
    index: int | None
    attempt: int
    pid: int
    phase: str
    ns: int
    extra: str

    @property
    def entity(self) -> tuple[str, int | None]:
        return (self.key, self.index)


def _write(phase: str, extra: str) -> None:
    path = os.environ.get(SIDE_ENV)
    if not path:
        return
    index = context.get("map_index")
    fields = [
        str(context["task_slug"]),
        "-" if index is None else str(index),
        str(context["task_run_count"]),
        str(os.getpid()),
        phase,
        str(time.time_ns()),
    ]
    if extra:
        fields.append(extra)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (" ".join(fields) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def body(extra: str = "") -> None:
    """Mark the body's start, sleep the configured pause, mark its end.

    The end line is written before the body returns its value; a task that raises
    afterwards (a retry, a LOOP) has still ended its body by then.
    """
    _write("start", extra)
    seconds = float(os.environ.get(PAUSE_ENV, "0.002"))
    if seconds > 0:
        time.sleep(seconds)
    hold = os.environ.get(HOLD_ENV)
    if os.environ.get(HOLD_KEY_ENV, context["task_slug"]) != context["task_slug"]:
        hold = None
    while hold and not os.path.exists(hold):
        time.sleep(0.005)
    _write("end", extra)


def read_lines(path: str | Path) -> list[Line]:
    """The side-effect file's complete lines (a torn last line is not a line)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    out: list[Line] = []
    for raw in text.splitlines(keepends=True):
        if not raw.endswith("\n"):
            break
        key, index, attempt, pid, phase, ns, *extra = raw.split()
        out.append(
            Line(
                key,
                None if index == "-" else int(index),
                int(attempt),
                int(pid),
                phase,
                int(ns),
                " ".join(extra),
            )
        )
    return out


@task
def start(base: int) -> int:
    body()
    return base


@task
def step(x: int) -> int:
    body()
    return x + 1


@task
def spread(n: int) -> list[int]:
    body()
    return [n + i for i in range(WIDTH)]


@task(max_retries=1, retry_delay=timedelta(seconds=0))
def square(x: int) -> int:
    body()
    if context["map_index"] % MAP_FLAKY_EVERY == 0 and context["task_run_count"] == 1:
        raise ValueError(f"first attempt of child {context['map_index']} fails")
    return x * x


@task(max_retries=FLAKY_ATTEMPTS - 1, retry_delay=timedelta(seconds=0))
def flaky() -> str:
    body()
    if context["task_run_count"] < FLAKY_ATTEMPTS:
        raise RuntimeError(f"attempt {context['task_run_count']} fails")
    return f"ok on attempt {context['task_run_count']}"


@task
def countdown(seed: int) -> int:
    iteration = context.get("task_loop_count", 1)
    body(f"L{iteration}")
    value = context.get("task_loop_result", seed)
    if iteration < LOOPS:
        raise signals.LOOP(result=value + 10)
    return int(value)


@task(cache_for=timedelta(hours=1), cache_validator=all_inputs)
def expensive(x: int) -> int:
    body()
    return x * 100


@task(trigger=triggers.manual_only)
def gate(x: int) -> int:
    body()
    return x + 1000


@task
def total(squares: list[int], note: str, looped: int, cached: int, approved: int) -> dict[str, Any]:
    body()
    return {
        "sum": sum(squares),
        "note": note,
        "looped": looped,
        "cached": cached,
        "approved": approved,
    }


def _build() -> Flow:
    with Flow("torture") as flow:
        base = Parameter("base", default=2)
        value = start(base)
        for _ in range(CHAIN):
            value = step(value)
        squares = square.map(spread(value))
        note = flaky()
        looped = countdown(value)
        cached = expensive(value)
        approved = gate(cached)
        total(squares, note, looped, cached, approved)
    return flow


torture_flow = _build()


# -- a wide flow of trivial bodies, for the group-commit window measurement ---------------

WIDE = 200


@task
def tick(i: int) -> int:
    body()
    return i


@task
def tally(xs: list[int]) -> int:
    body()
    return sum(xs)


def _build_wide() -> Flow:
    with Flow("torture-wide") as flow:
        value = tick(0)
        for _ in range(WIDE // 2 - 1):
            value = tick(value)
        tally(tick.map(list(range(WIDE // 2))), upstream_tasks=[value])
    return flow


wide_flow = _build_wide()

FLOWS = {"torture": torture_flow, "wide": wide_flow}
