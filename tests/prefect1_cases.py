"""Builds and runs the Prefect 1.4.1 behaviour cases through statecore's public API.

The case vocabulary is described in tests/cases/prefect1_semantics.json ("vocabulary").
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from statecore import Flow, Parameter, case, context, merge, signals, states, triggers
from statecore.backends import MemoryStore
from statecore.flow import Edge
from statecore.runners import LocalRunner, resume
from statecore.tasks import FunctionTask, Task, flatten, unmapped

HERE = Path(__file__).parent
CASE_FILES = [HERE / "cases" / "prefect1_semantics.json"]


def load_cases() -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for path in CASE_FILES:
        if path.exists():
            for c in json.loads(path.read_text())["cases"]:
                seen.setdefault(c["id"], c)
    return list(seen.values())


def make_trigger(spec: Any) -> Callable[..., bool]:
    if isinstance(spec, str):
        return getattr(triggers, spec)  # type: ignore[no-any-return]
    fn = getattr(triggers, spec["name"])
    return fn(at_least=spec.get("at_least"), at_most=spec.get("at_most"))  # type: ignore[no-any-return]


SIGNALS = {
    name: getattr(signals, name)
    for name in (
        "FAIL",
        "SUCCESS",
        "SKIP",
        "RETRY",
        "PAUSE",
        "TRIGGERFAIL",
        "VALIDATIONFAIL",
        "LOOP",
    )
}


class Attempts:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, Any]] = Counter()
        self.lock = threading.Lock()

    def enter(self, name: str) -> int:
        key = (name, context.get("map_index"))
        with self.lock:
            self.counts[key] += 1
            return self.counts[key]

    def total(self, name: str) -> int:
        return sum(v for (n, _), v in self.counts.items() if n == name)


def behaviour_fn(name: str, spec: dict[str, Any], attempts: Attempts) -> Callable[..., Any]:
    op = spec["op"]

    def run(**inputs: Any) -> Any:
        n = attempts.enter(name)
        x = inputs.get("x")
        if op == "return":
            return spec["value"]
        if op == "raise":
            raise ValueError("boom")
        if op == "signal":
            sig = SIGNALS[spec["signal"]]
            if "value" in spec:
                raise sig(result=spec["value"])
            raise sig()
        if op == "endrun":
            raise signals.ENDRUN(getattr(states, spec["state"])())
        if op == "fail_n_times_then_return":
            if n <= spec["n"]:
                raise ValueError("boom")
            return spec["value"]
        if op == "signal_n_times_then_return":
            if n <= spec["n"]:
                raise SIGNALS[spec["signal"]]()
            return spec["value"]
        if op == "identity":
            return x
        if op == "add":
            return x + spec["value"]
        if op == "sum_args":
            return sum(inputs.values())
        if op == "sum":
            return sum(x)
        if op == "pack":
            return [inputs[k] for k in sorted(inputs)]
        if op == "raise_if":
            if x == spec["equals"]:
                raise ValueError("boom")
            return x
        if op == "skip_if":
            if x == spec["equals"]:
                raise signals.SKIP()
            return x
        if op == "repeat":
            return [x] * spec["times"]
        if op == "loop_until":
            i = context.get("task_loop_result", 0)
            if i < spec["value"]:
                raise signals.LOOP(result=i + 1)
            return i
        if op == "run_name":
            return context["task_full_name"]
        if op == "map_index":
            return context["map_index"]
        if op == "sleep_then_return":
            time.sleep(spec["seconds"])
            return spec["value"]
        raise AssertionError(f"unknown op {op}")

    return run


def initial_state(name: str) -> states.State:
    return {
        "Success": lambda: states.Success(result=1),
        "Failed": lambda: states.Failed(result=ValueError("boom")),
        "Cached": lambda: states.Cached(result=1),
    }.get(name, lambda: getattr(states, name)())()


def build_flow(graph: dict[str, Any], attempts: Attempts) -> tuple[Flow, dict[str, Task]]:
    from datetime import timedelta

    handles: dict[str, Task] = {}
    flow = Flow("case")
    with flow:
        specs = graph["tasks"]
        i = 0
        while i < len(specs):
            spec = specs[i]
            if "case" in spec:
                cond = spec["case"]
                group = [spec]
                while i + len(group) < len(specs) and specs[i + len(group)].get("case") == cond:
                    group.append(specs[i + len(group)])
                with case(handles[cond["condition"]], cond["value"]):
                    for s in group:
                        handles[s["name"]] = add_task(s, handles, attempts, timedelta)
                i += len(group)
            else:
                handles[spec["name"]] = add_task(spec, handles, attempts, timedelta)
                i += 1
    if graph.get("reference_tasks"):
        flow.set_reference_tasks([handles[n] for n in graph["reference_tasks"]])
    return flow, handles


def add_task(
    spec: dict[str, Any], handles: dict[str, Task], attempts: Attempts, timedelta: Any
) -> Task:
    kind = spec.get("kind", "task")
    if kind == "parameter":
        if "default" in spec:
            return Parameter(spec["name"], default=spec["default"], required=spec.get("required"))
        return Parameter(spec["name"], required=spec.get("required"))
    if kind == "merge":
        return merge(*[handles[n] for n in spec["merge"]])
    options: dict[str, Any] = {"name": spec["name"]}
    if "trigger" in spec:
        options["trigger"] = make_trigger(spec["trigger"])
    if "skip_on_upstream_skip" in spec:
        options["skip_on_upstream_skip"] = spec["skip_on_upstream_skip"]
    if spec.get("max_retries"):
        options["max_retries"] = spec["max_retries"]
        options["retry_delay"] = timedelta(seconds=spec.get("retry_delay_s", 0))
    if spec.get("timeout_s"):
        options["timeout"] = spec["timeout_s"]
    if spec.get("cache_for_s"):
        options["cache_for"] = timedelta(seconds=spec["cache_for_s"])
    t = FunctionTask(
        behaviour_fn(
            spec["name"], spec.get("behaviour", {"op": "return", "value": None}), attempts
        ),
        **options,
    )
    kwargs: dict[str, Any] = {}
    for arg, src in spec.get("inputs", {}).items():
        value: Any = handles[src["task"]] if "task" in src else src["const"]
        if src.get("flatten"):
            value = flatten(value)
        if src.get("unmapped"):
            value = unmapped(value)
        kwargs[arg] = value
    upstream = [handles[n] for n in spec.get("upstream", [])]
    if spec.get("map"):
        return t.map(upstream_tasks=upstream or None, **kwargs)
    return t(upstream_tasks=upstream or None, **kwargs)


def normalise(value: Any) -> Any:
    if isinstance(value, signals.Signal):
        return {"signal": type(value).__name__}
    if isinstance(value, BaseException):
        return {"error": getattr(value, "type_name", type(value).__name__).rsplit(".", 1)[-1]}
    if isinstance(value, list | tuple):
        return [normalise(v) for v in value]
    return value


def run_flow_case(c: dict[str, Any]) -> dict[str, Any]:
    """Run a flow case; return what was observed, in the case's vocabulary."""
    graph = c["graph"]
    attempts = Attempts()
    flow, handles = build_flow(graph, attempts)
    store = MemoryStore()
    mode = graph.get("run_mode", "flow.run")
    runner = LocalRunner(single_pass=mode == "single_pass")
    task_states = {
        handles[n]: initial_state(s) for n, s in graph.get("initial_task_states", {}).items()
    }
    params = graph.get("parameters", {})
    state = flow.run(parameters=params, store=store, task_states=task_states, runner=runner)
    if mode == "run_twice":
        state = flow.run(parameters=params, store=store, task_states=task_states, runner=runner)
    if graph.get("resume"):
        state = resume(
            state.run_id,
            flow,
            store=store,
            approve=[handles[n] for n in graph["resume"]],
            runner=runner,
        )
    observed: dict[str, Any] = {
        "flow_state": state.name,
        "flow_message": state.message,
        "task_states": {},
        "map_states": {},
        "task_results": {},
        "attempts": {},
        "run_id": state.run_id,
        "store": store,
        "state": state,
    }
    for name, h in handles.items():
        s = state.result[h]
        observed["task_states"][name] = s.name
        if isinstance(s, states.Mapped):
            observed["map_states"][name] = [m.name for m in s.map_states]
            observed["task_results"][name] = normalise([m.result for m in s.map_states])
        else:
            observed["task_results"][name] = normalise(s.result)
        observed["attempts"][name] = attempts.total(name)
    return observed


def run_trigger_case(c: dict[str, Any]) -> tuple[Any, str]:
    """Evaluate a trigger case: (trigger_result, final task state name).

    The trigger is called directly on the upstream states; the task's pipeline is
    ``decide`` on a view whose upstream tasks hold those states (a pure, in-core check).
    """
    from statecore.decide import decide, outcome_state, settle
    from statecore.fold import RunView
    from statecore.graph import Graph

    trig = make_trigger(c.get("trigger", "all_successful"))
    ups = c["upstream_states"]

    def build(spec: Any) -> states.State:
        if isinstance(spec, dict):
            return states.Mapped(map_states=[initial_state(s) for s in spec["Mapped"]])
        return initial_state(spec)

    up_states = [build(s) for s in ups]
    edges = {Edge(Task(name=f"u{i}"), Task(name="t")): s for i, s in enumerate(up_states)}
    try:
        trigger_result: Any = trig(edges)
    except signals.Signal as sig:
        trigger_result = type(sig).__name__

    flow = Flow("trigger-case")
    ups_tasks = [Task(name=f"u{i}") for i in range(len(ups))]
    t = FunctionTask(
        lambda: 1,
        name="t",
        trigger=trig,
        skip_on_upstream_skip=c.get("skip_on_upstream_skip", True),
    )
    flow.add_task(t)
    for u in ups_tasks:
        flow.add_edge(u, t)
    g = Graph(flow)
    view = RunView("trigger-case")
    from statecore.events import RunStarted

    view.start(RunStarted("trigger-case", g.record(), {}), 0)
    for u, s in zip(ups_tasks, up_states, strict=True):
        i = g.index_of[u]
        if isinstance(s, states.Mapped):
            view.apply_state(i, None, states.Mapped(n_map_states=len(s.map_states)), 1, 0)
            for j, child in enumerate(s.map_states):
                view.apply_state(i, j, child, 1, 0)
        elif type(s) is not states.Pending:
            view.apply_state(i, None, s, 1, 0)
    ti = g.index_of[t]
    decision = decide(g, view, 0, [(ti, None)])
    if decision.set_states:
        return trigger_result, decision.set_states[0].state.name
    if decision.run:
        exc_value = None, t.run()
        st, ended = outcome_state(*exc_value, 1)
        return trigger_result, settle(
            g.nodes[ti], st, attempt=1, now=0, inputs={}, parameters={}, ended_run=ended
        ).name
    return trigger_result, view.runs[ti].state.name
