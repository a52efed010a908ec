"""A flow on a schedule, run durably: ``python examples/scheduled.py``.

Runs a small ETL every 2 seconds, three times, on the embedded SQLite store. Each slot's
run has an id derived from the flow and the slot's time (``etl@2026-...Z``); kill the
script while a run is under way and start it again: that slot's run is resumed, not
started twice. Then try ``statecore schedule examples/scheduled.py:flow --next 3``.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum

from statecore import Flow, Parameter, context, task
from statecore.runners import run_on_schedule
from statecore.schedules import Schedule, filters
from statecore.schedules.clocks import IntervalClock


@task
def extract(source: str) -> list[int]:
    return [1, 2, 3] if source == "demo" else []


@task
def load(rows: list[int]) -> str:
    slot = pendulum.from_timestamp(context["scheduled_start_time"] / 1e9)
    return f"loaded {len(rows)} rows for the slot at {slot.to_iso8601_string()}"


schedule = Schedule(
    clocks=[
        IntervalClock(
            timedelta(seconds=2),
            start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
            parameter_defaults={"source": "demo"},
        )
    ],
    not_filters=[filters.on_date(2, 29)],
)

with Flow("etl", schedule=schedule) as flow:
    load(extract(Parameter("source", default="none")))


if __name__ == "__main__":
    print("next start times:", [t.to_iso8601_string() for t in schedule.next(3)])
    last = run_on_schedule(
        flow,
        max_runs=3,
        on_run=lambda run: print(run.run_id, run.state.name if run.state else run.skipped),
    )
    print("last run:", last)
