"""Example flows for the command-line tests (loaded as ``tests/flows/demo.py:NAME``).

Tasks append their name to the file in ``$STATECORE_TEST_COUNTER`` (when set), so a test
can tell which task bodies ran in which process.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from statecore import Flow, Parameter, context, signals, task, triggers


def _ran(name: str) -> None:
    path = os.environ.get("STATECORE_TEST_COUNTER")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(name + "\n")


@task
def numbers(n: int) -> list[int]:
    _ran("numbers")
    context["logger"].info("making %s numbers", n)
    return list(range(1, n + 1))


@task
def square(x: int) -> int:
    _ran("square")
    return x * x


@task
def total(xs: list[int]) -> int:
    _ran("total")
    context["logger"].info("adding %s values", len(xs))
    return sum(xs)


@task
def report(t: int, label: str) -> str:
    _ran("report")
    context["logger"].warning("total is %s", t)
    return f"{label}: {t}"


with Flow("squares") as ok:
    n = Parameter("n", default=3)
    label = Parameter("label", default="sum of squares")
    report(total(square.map(numbers(n))), label)


@task
def load() -> dict[str, Any]:
    _ran("load")
    return {"rows": 3}


@task
def broken(data: dict[str, Any]) -> int:
    _ran("broken")
    raise RuntimeError(f"cannot transform {data['rows']} rows")


@task
def publish(x: int) -> None:
    _ran("publish")


with Flow("fails") as failing:
    publish(broken(load()))


@task
def prepare() -> int:
    _ran("prepare")
    return 41


@task(trigger=triggers.manual_only)
def approve(x: int) -> int:
    _ran("approve")
    return x + 1


@task
def ship(x: int) -> str:
    _ran("ship")
    return f"shipped {x}"


with Flow("gated") as paused:
    ship(approve(prepare()))


_attempts: dict[str, int] = {}


@task(max_retries=2, retry_delay=timedelta(seconds=0))
def flaky() -> list[int]:
    _ran("flaky")
    count = _attempts["flaky"] = _attempts.get("flaky", 0) + 1
    context["logger"].info("flaky attempt %s", count)
    if count < 3:
        raise ValueError(f"flaky failure {count}")
    return [1, 2, 3]


@task
def halve(x: int) -> float:
    _ran("halve")
    if x == 2:
        raise signals.SKIP("two is skipped")
    context["logger"].info("halving %s", x)
    return x / 2


@task
def crash() -> None:
    _ran("crash")
    raise RuntimeError("this task always fails")


@task
def after_crash() -> None:
    _ran("after_crash")


@task(trigger=triggers.all_finished, skip_on_upstream_skip=False)
def summary(xs: list[Any]) -> int:
    _ran("summary")
    return len(xs)


@task
def looper() -> int:
    _ran("looper")
    count = int(context.get("task_loop_count", 1))
    if count < 3:
        raise signals.LOOP(f"loop {count}", result=count)
    return count


with Flow("mixed") as mixed:
    values = flaky()
    halves = halve.map(values)
    summary(halves)
    after_crash(upstream_tasks=[crash()])
    looper()


@task
def first() -> int:
    _ran("first")
    return 1


@task
def dies_once(x: int) -> int:
    """Raises KeyboardInterrupt the first time (as if the process were stopped)."""
    path = os.environ["STATECORE_TEST_COUNTER"]
    with open(path, encoding="utf-8") as fh:
        seen = "dies_once" in fh.read().split()
    _ran("dies_once")
    if not seen:
        raise KeyboardInterrupt
    return x + 1


with Flow("interrupted") as interrupted:
    dies_once(first())


@task
def odd_values() -> dict[Any, Any]:
    _ran("odd_values")
    return {
        "when": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "pair": (1, 2),
        "nan": float("nan"),
        "nested": [1, "two", {"three": 3.0}],
        7: "int key",
    }


with Flow("odd") as odd:
    odd_values()


with Flow("twins") as twins:
    square(1)
    square(2)


@task
def extract(n: int) -> list[int]:
    _ran("extract")
    return list(range(n))


@task
def transform(xs: list[int]) -> list[int]:
    _ran("transform")
    return [x * 10 for x in xs]


@task
def load_rows(xs: list[int]) -> str:
    _ran("load_rows")
    return f"loaded {xs}"


with Flow("chain") as chain:
    load_rows(transform(extract(Parameter("n", default=2))))


@task
def step(x: int) -> int:
    _ran("step")
    time.sleep(0.4)
    return x + 1


with Flow("slow") as slow:
    step(step(step(step(0))))
