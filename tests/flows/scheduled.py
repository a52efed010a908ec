"""A flow with a schedule, for the command-line schedule tests (``scheduled.py:flow``)."""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum

from statecore import Flow, Parameter, context, task
from statecore.schedules import Schedule
from statecore.schedules.clocks import IntervalClock


@task
def record(x: int) -> int:
    path = os.environ.get("STATECORE_TEST_COUNTER")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{context['scheduled_start_time']} {x}\n")
    return x


schedule = Schedule(
    clocks=[
        IntervalClock(
            timedelta(hours=1),
            start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
            parameter_defaults={"x": 7},
        )
    ]
)

with Flow("hourly", schedule=schedule) as flow:
    record(Parameter("x", default=1))

with Flow("unscheduled") as plain:
    record(Parameter("x", default=1))
