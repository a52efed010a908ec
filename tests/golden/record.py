"""Record the golden logs: ``python -m tests.golden.record`` from the repository root.

Each golden file holds one run's log exactly as a store returned it (every envelope field,
payloads in base64) and the fold of that log when it was recorded. ``tests/core/test_golden.py``
folds the stored log again and compares: a change to the fold or the codec that alters
the meaning of an old log fails there. Re-record only for a deliberate change of meaning,
and say so in the commit.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from statecore import Flow, Parameter, context, signals, states, task, triggers
from statecore.backends import MemoryStore
from statecore.backends.base import Store
from statecore.cache_validators import all_inputs
from statecore.codec import slots_of
from statecore.fold import RunView, TaskRun, fold
from statecore.runners import LocalRunner, resume

HERE = Path(__file__).resolve().parent
RUNNER = {"max_workers": 1}


def summary(view: RunView) -> dict[str, Any]:
    """What a fold says, as JSON: every TaskRun field and every State field."""

    def state(s: states.State) -> dict[str, Any]:
        out: dict[str, Any] = {"class": type(s).__name__}
        # every field a state change carries (the in-memory annotations are not logged)
        for slot in slots_of(type(s)):
            if slot in ("run_id", "map_states"):
                continue
            out[slot] = repr(getattr(s, slot, None))
        return out

    def run(r: TaskRun) -> dict[str, Any]:
        fields = {slot: repr(getattr(r, slot)) for slot in TaskRun.__slots__ if slot != "state"}
        return {**fields, "state": state(r.state)}

    return {
        "flow_state": state(view.flow_state) | {"result": None},
        "tasks": {key: run(r) for key, r in zip(view.keys, view.runs, strict=True)},
        "children": {
            view.keys[i]: [run(r) for r in kids] for i, kids in sorted(view.children.items())
        },
        "notes": [n.code for _, n in view.notes],
        "logs": [r.message for _, r in view.logs],
        "timeline": [
            [e.seq, e.task, e.index, e.prev, e.new, e.attempt, e.message, e.started_at, e.ended_at]
            for e in view.timeline()
        ],
        "problems": view.problems,
    }


def dump(store: Store, run_id: str) -> list[dict[str, Any]]:
    return [
        {
            "run_id": e.run_id,
            "seq": e.seq,
            "epoch": e.epoch,
            "prev_hash": base64.b64encode(e.prev_hash).decode(),
            "kind": e.kind,
            "ts": e.ts,
            "payload": base64.b64encode(e.payload).decode(),
        }
        for e in store.read(run_id)
    ]


# -- the runs ---------------------------------------------------------------------------


def map_with_retries(store: Store) -> str:
    tries: dict[int, int] = {}

    @task(max_retries=1, retry_delay=timedelta(0))
    def halve(x: int) -> float:
        tries[x] = tries.get(x, 0) + 1
        context["logger"].info("halving %s", x)
        if x == 3:
            raise ValueError("three is odd")
        if x == 1 and tries[x] == 1:
            raise signals.RETRY("once more")
        return x / 2

    @task(trigger=triggers.all_finished)
    def report(xs: list[Any]) -> int:
        return len(xs)

    with Flow("golden-map") as flow:
        n = Parameter("n", default=4)
        report(halve.map(range_of(n)))
    return str(flow.run(store=store, run_id="map", runner=LocalRunner(**RUNNER)).run_id)


@task
def range_of(n: int) -> list[int]:
    return list(range(n))


def cached_then_interrupted(store: Store) -> str:
    calls: list[str] = []

    @task(cache_for=timedelta(days=36500), cache_validator=all_inputs)
    def cached(x: int) -> int:
        return x * 2

    @task
    def crash(y: int) -> int:
        calls.append("crash")
        if len(calls) == 1:
            raise KeyboardInterrupt
        return y

    with Flow("golden-cache") as flow:
        crash(cached(21))
    with contextlib.suppress(KeyboardInterrupt):
        flow.run(store=store, run_id="cache", runner=LocalRunner(**RUNNER))
    return str(resume("cache", flow, store=store, runner=LocalRunner(**RUNNER)).run_id)


def loop_skip_and_gate(store: Store) -> str:
    @task
    def count_up() -> int:
        n = context.get("task_loop_count", 1)
        if n < 3:
            raise signals.LOOP(result=n)
        return n

    @task
    def skipper() -> None:
        raise signals.SKIP("not today")

    @task
    def after_skip(x: Any) -> int:
        return 1

    @task(trigger=triggers.manual_only)
    def gate(x: int) -> str:
        return f"approved {x}"

    @task(trigger=triggers.all_failed)
    def only_on_failure(x: int) -> int:
        return x

    with Flow("golden-loop") as flow:
        c = count_up()
        after_skip(skipper())
        g = gate(c)
        only_on_failure(c)
    flow.run(store=store, run_id="loop", runner=LocalRunner(**RUNNER))
    return str(resume("loop", flow, store=store, approve=[g], runner=LocalRunner(**RUNNER)).run_id)


RUNS: dict[str, Callable[[Store], str]] = {
    "map_with_retries": map_with_retries,
    "cached_then_interrupted": cached_then_interrupted,
    "loop_skip_and_gate": loop_skip_and_gate,
}


def main() -> None:
    for name, make in RUNS.items():
        store = MemoryStore()
        run_id = make(store)
        events = dump(store, run_id)
        expected = summary(fold(store.read(run_id)))
        path = HERE / f"{name}.json"
        path.write_text(json.dumps({"events": events, "fold": expected}, indent=1) + "\n")
        print(f"wrote {path} ({len(events)} events)")


if __name__ == "__main__":
    main()
