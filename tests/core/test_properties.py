"""Property tests of the core, driven by the strategies users get in statecore.testing.

* decide never proposes a transition outside the machine's table;
* every flow drawn from terminating behaviours ends, every task and child finished;
* the fold of the log equals what the run returned;
* each built-in trigger agrees with a small reference model written here;
* decide over every entity (a naive loop written here) and the runner's incremental
  candidates reach the same final states: a differential test.
"""

from __future__ import annotations

import dataclasses
import doctest
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, find, given, settings
from hypothesis import strategies as st

from statecore import machine, signals, states, triggers
from statecore.backends import MemoryStore
from statecore.context import reset_context, set_context
from statecore.decide import (
    Decision,
    RunTask,
    all_entities,
    decidable,
    decide,
    final_state,
    outcome_state,
    settle,
)
from statecore.events import RunStarted, StoredEvent
from statecore.flow import Edge
from statecore.fold import RunView, TaskRun, fold
from statecore.graph import Graph
from statecore.runners import replay, resume
from statecore.states import (
    NOT_PERSISTED,
    Cached,
    Looped,
    Mapped,
    Paused,
    Pending,
    Retrying,
    Running,
    State,
    results_equal,
)
from statecore.testing import strategies
from statecore.testing.strategies import DrawnFlow, flows, upstream_states

# STATECORE_PROPERTY_SCALE=20 runs twenty times as many examples (a soak run).
SCALE = int(os.environ.get("STATECORE_PROPERTY_SCALE", "1"))
FEW = settings(max_examples=60 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MANY = settings(
    max_examples=150 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def run(drawn: DrawnFlow, store: MemoryStore) -> State:
    return drawn.flow.run(parameters=dict(drawn.parameters), store=store)


# -- helpers ------------------------------------------------------------------------------------


def entity_states(state_of: Callable[[str], State], keys: list[str]) -> Iterator[tuple[str, State]]:
    """(label, state) for every task and mapped child."""
    for key in keys:
        s = state_of(key)
        yield key, s
        if isinstance(s, Mapped):
            for j, child in enumerate(s.map_states):
                yield f"{key}[{j}]", child


def assert_same_state(label: str, a: State, b: State, *, stored: bool) -> None:
    assert a.name == b.name, (label, a, b)
    assert a.message == b.message, (label, a.message, b.message)
    if isinstance(a, Mapped):
        assert isinstance(b, Mapped)
        assert len(a.map_states) == len(b.map_states), label
        return
    if stored and (a.result is NOT_PERSISTED or b.result is NOT_PERSISTED):
        return
    assert results_equal(a.result, b.result), (label, a.result, b.result)


def state_fields(state: State) -> dict[str, Any]:
    """Every field of a State, by its slots (run_id aside: a view's states have none)."""
    fields: dict[str, Any] = {"class": type(state)}
    for cls in type(state).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if slot not in ("run_id", "map_states"):  # children are compared as TaskRuns
                fields[slot] = getattr(state, slot, None)
    return fields


def assert_same_fields(label: str, a: Any, b: Any) -> None:
    if a is NOT_PERSISTED or b is NOT_PERSISTED:
        return
    assert results_equal(a, b), (label, a, b)


def assert_views_agree(live: RunView, folded: RunView) -> None:
    """Every field of every TaskRun and of its State agrees between two views, and the
    run's own fields (the live view folds its first event from the body it wrote)."""
    assert live.keys == folded.keys
    assert live.graph == folded.graph and live.flow_name == folded.flow_name
    assert live.parameters == folded.parameters and live.parent_run == folded.parent_run
    assert live.started == folded.started and live.head == folded.head
    assert sorted(live.children) == sorted(folded.children)
    pairs = list(zip(live.runs, folded.runs, strict=True))
    for node, kids in live.children.items():
        pairs += list(zip(kids, folded.children[node], strict=True))
    for i, (a, b) in enumerate(pairs):
        label = f"run {i} ({a.state!r} / {b.state!r})"
        for slot in TaskRun.__slots__:
            if slot == "state":
                fa, fb = state_fields(a.state), state_fields(b.state)
                assert fa.keys() == fb.keys(), label
                for name in fa:
                    assert_same_fields(f"{label}.state.{name}", fa[name], fb[name])
            else:
                assert_same_fields(f"{label}.{slot}", getattr(a, slot), getattr(b, slot))


def state_of_entity(view: RunView, node: int, index: int | None) -> State:
    return view.runs[node].state if index is None else view.children[node][index].state


def check_decision(view: RunView, decision: Decision) -> None:
    for action in decision.set_states:
        current = state_of_entity(view, action.node, action.index)
        assert machine.is_legal(current.name, action.state.name), (
            f"decide proposed {current.name} -> {action.state.name} for "
            f"{view.keys[action.node]}[{action.index}]"
        )
    for rt in decision.run:
        current = state_of_entity(view, rt.node, rt.index)
        assert machine.is_legal(current.name, "Running"), (
            f"decide proposed running {view.keys[rt.node]}[{rt.index}] from {current.name}"
        )


def check_log(graph: Graph, events: list[StoredEvent]) -> RunView:
    """Fold the log event by event; decide on every intermediate view; no problems."""
    view = RunView(events[0].run_id)
    for stored in events:
        view.apply(stored)
        if stored.kind == "state":
            check_decision(view, decide(graph, view, stored.ts))
    assert view.problems == []
    return view


# -- the strategies themselves --------------------------------------------------------------------


def test_strategy_docstring_examples_run() -> None:
    result = doctest.testmod(strategies, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4
    assert result.failed == 0


@pytest.mark.parametrize("cls", list(states.STATE_CLASSES.values()), ids=lambda c: c.__name__)
def test_states_draws_every_class(cls: type[State]) -> None:
    drawn = find(strategies.states(kinds=[cls]), lambda s: True)
    assert type(drawn) is cls or (cls is Mapped and isinstance(drawn, State))


def test_states_draws_the_extra_fields() -> None:
    mapped = find(strategies.states(kinds=[Mapped]), lambda s: len(s.map_states) >= 2)
    assert all(isinstance(c, State) and c.is_finished() for c in mapped.map_states)
    retrying = find(
        strategies.states(kinds=["Retrying"]),
        lambda s: s.start_time is not None and s.run_count > 1,
    )
    assert retrying.is_retrying()
    looped = find(strategies.states(kinds=["Looped"]), lambda s: s.loop_count > 1)
    assert looped.is_looped()


def test_upstream_states_shares_a_state_between_two_edges_of_one_task() -> None:
    def shares(upstream: dict[Edge, State]) -> bool:
        by_task: dict[Any, list[State]] = {}
        for edge, s in upstream.items():
            by_task.setdefault(edge.upstream_task, []).append(s)
        return any(len(ss) == 2 and ss[0] is ss[1] for ss in by_task.values())

    found = find(upstream_states(min_size=1), shares)
    assert len({e.upstream_task for e in found}) >= 1
    with_children = find(
        upstream_states(min_size=1),
        lambda u: any(isinstance(s, Mapped) and s.map_states for s in u.values()),
    )
    assert with_children


@FEW
@given(upstream_states(min_size=2, max_size=4))
def test_upstream_states_have_distinct_tasks_and_one_downstream(
    upstream: dict[Edge, State],
) -> None:
    assert 2 <= len({e.upstream_task for e in upstream}) <= 4
    assert len({e.downstream_task for e in upstream}) == 1
    assert all(s.is_finished() and not s.is_looped() for s in upstream.values())


def test_strategies_reject_bad_arguments() -> None:
    with pytest.raises(ValueError):
        upstream_states(min_size=3, max_size=1)
    with pytest.raises(ValueError):
        flows(max_tasks=0)
    with pytest.raises(TypeError):
        strategies.states(kinds=[int])  # type: ignore[list-item]


@FEW
@given(flows(max_tasks=6, terminating=False))
def test_drawn_flows_describe_themselves(drawn: DrawnFlow) -> None:
    text = repr(drawn)
    assert text.startswith('with Flow("drawn") as flow:')
    for label in drawn.handles:
        assert f"{label} = " in text
    assert drawn.terminating == (not drawn.gated)


# -- (a) decide never proposes an illegal transition ----------------------------------------------


@FEW
@given(flows())
def test_decide_never_proposes_an_illegal_transition(drawn: DrawnFlow) -> None:
    store = MemoryStore()
    state = run(drawn, store)
    graph = Graph(drawn.flow)
    view = check_log(graph, store.read(state.run_id))
    final = decide(graph, view, 2**62)
    # at the end of time only a Cached task can change: its cache has expired
    assert not final.run
    for action in final.set_states:
        assert isinstance(state_of_entity(view, action.node, action.index), Cached)
        assert action.state == Pending("Cache was invalid; ready to run.")


@FEW
@given(flows(max_tasks=6, terminating=False))
def test_pauses_and_approvals_stay_in_the_machine(drawn: DrawnFlow) -> None:
    store = MemoryStore()
    state = run(drawn, store)
    # as in Prefect 1, a manual_only task that fails and retries pauses again: each
    # attempt of each task may need its own approval (a RETRY signal retries past
    # max_retries, and each LOOP iteration is a task run of its own). A manual_only task
    # already Cached pauses again on every later pass too (Prefect 1 checks its trigger
    # after its cache), so each attempt may cost a second round, for its upstreams
    attempts = sum(t.max_retries + 1 for t in drawn.flow.tasks)
    attempts += sum(b.n + 1 for b in drawn.behaviours.values() if b.op in ("retry", "loop"))
    rounds = 2 * attempts + 1
    for _ in range(rounds):
        if state.is_finished():
            break
        paused = [h for h in drawn.flow.tasks if _paused_somewhere(state.result[h])]
        assert paused, f"a run that is not finished waits for approval: {state.result}"
        state = resume(state.run_id, drawn.flow, store=store, approve=paused)
    assert state.is_finished()
    check_log(Graph(drawn.flow), store.read(state.run_id))


def _paused_somewhere(s: State) -> bool:
    return s.is_paused() or (isinstance(s, Mapped) and any(c.is_paused() for c in s.map_states))


# -- (b) terminating flows end --------------------------------------------------------------------


@MANY
@given(flows())
def test_terminating_flows_finish_every_task(drawn: DrawnFlow) -> None:
    store = MemoryStore()
    state = run(drawn, store)
    assert state.name in ("Success", "Failed"), state
    keys = list(state.result)
    assert len(keys) == len(drawn.flow.tasks)
    for label, s in entity_states(state.result.__getitem__, keys):
        assert s.is_finished() and not s.is_looped(), (label, s)
    for label, handle in drawn.handles.items():
        assert state.result[handle].is_finished(), label


# -- (c) fold(log) equals the returned states -----------------------------------------------------


@MANY
@given(flows())
def test_fold_of_the_log_equals_the_returned_states(drawn: DrawnFlow) -> None:
    store = MemoryStore()
    state = run(drawn, store)
    view = fold(store.read(state.run_id))
    assert view.flow_state.name == state.name
    assert view.flow_state.message == state.message
    assert list(view.task_states) == list(state.result)
    for key in state.result:
        live = state.result[key]
        folded = view.task_states[key]
        assert_same_state(key, folded, live, stored=True)
        if isinstance(live, Mapped):
            assert isinstance(folded, Mapped)
            for j, (f, s) in enumerate(zip(folded.map_states, live.map_states, strict=True)):
                assert_same_state(f"{key}[{j}]", f, s, stored=True)
    again = replay(store, state.run_id)
    assert [e.new for e in again.timeline() if e.task is None] == ["Running", state.name]
    # every field of every TaskRun and State, the live runner's view against the fold
    assert_views_agree(state.result._view, again)
    assert again.flow_state == view.flow_state


# -- (d) built-in triggers against a reference model ----------------------------------------------

SUCCESS_NAMES = {"Success", "Cached", "Mapped", "Skipped"}
FAILED_NAMES = {"Failed", "TriggerFailed", "ValidationFailed", "TimedOut"}
FINISHED_NAMES = SUCCESS_NAMES | FAILED_NAMES | {"Finished", "Cancelled", "Looped"}


def counted_states(upstream: Mapping[Edge, State]) -> list[State]:
    """One state per upstream task (however many edges), mapped parents by their children."""
    per_task: dict[int, State] = {}
    for edge, s in upstream.items():
        per_task.setdefault(id(edge.upstream_task), s)
    out: list[State] = []
    for s in per_task.values():
        out.extend(s.map_states if s.name == "Mapped" else [s])
    return out


def bounds_ok(hits: int, n: int, at_least: float | None, at_most: float | None) -> bool:
    low = 0.0 if at_least is None else (n * at_least if at_least < 1 else at_least)
    high = float(n) if at_most is None else (n * at_most if at_most < 1 else at_most)
    return low <= hits <= high


def reference(name: str, upstream: Mapping[Edge, State], **kw: Any) -> str:
    """What Prefect 1's trigger would do: 'pass', 'TRIGGERFAIL', 'SKIP' or 'PAUSE'."""
    ss = [s.name for s in counted_states(upstream)]
    ok_succ = [n in SUCCESS_NAMES for n in ss]
    ok_fail = [n in FAILED_NAMES for n in ss]
    if name == "manual_only":
        return "PAUSE"
    if name in ("all_finished", "always_run"):
        return "pass" if all(n in FINISHED_NAMES for n in ss) else "TRIGGERFAIL"
    if name == "all_successful":
        return "pass" if all(ok_succ) else "TRIGGERFAIL"
    if name == "all_failed":
        return "pass" if all(ok_fail) else "TRIGGERFAIL"
    if name == "any_successful":
        return "pass" if not upstream or any(ok_succ) else "TRIGGERFAIL"
    if name == "any_failed":
        return "pass" if not upstream or any(ok_fail) else "TRIGGERFAIL"
    if name == "not_all_skipped":
        if all(n == "Skipped" for n in ss):
            return "SKIP"
        return "pass" if all(ok_succ) else "TRIGGERFAIL"
    if name in ("some_successful", "some_failed"):
        if not upstream:
            return "pass"
        hits = sum(ok_succ if name == "some_successful" else ok_fail)
        return "pass" if bounds_ok(hits, len(ss), kw["at_least"], kw["at_most"]) else "TRIGGERFAIL"
    raise AssertionError(name)


def observed(
    trigger: Callable[[Mapping[Edge, State]], bool], upstream: Mapping[Edge, State]
) -> str:
    try:
        result = trigger(upstream)
    except signals.TRIGGERFAIL:
        return "TRIGGERFAIL"
    except signals.SKIP:
        return "SKIP"
    except signals.PAUSE:
        return "PAUSE"
    return "pass" if result is True else f"returned {result!r}"


PLAIN_TRIGGERS = [
    "all_finished",
    "always_run",
    "all_successful",
    "all_failed",
    "any_successful",
    "any_failed",
    "not_all_skipped",
    "manual_only",
]

EVERY_KIND = list(states.STATE_CLASSES.values())


@pytest.mark.parametrize("name", PLAIN_TRIGGERS)
@MANY
@given(
    upstream=st.one_of(upstream_states(), upstream_states(kinds=EVERY_KIND)),
)
def test_trigger_agrees_with_the_reference_model(name: str, upstream: dict[Edge, State]) -> None:
    assert observed(getattr(triggers, name), upstream) == reference(name, upstream)


BOUND = st.one_of(
    st.none(),
    st.integers(0, 6).map(float),
    st.floats(0, 1, exclude_max=True, allow_nan=False),
)


@pytest.mark.parametrize("name", ["some_successful", "some_failed"])
@MANY
@given(upstream=upstream_states(), at_least=BOUND, at_most=BOUND)
def test_threshold_trigger_agrees_with_the_reference_model(
    name: str, upstream: dict[Edge, State], at_least: float | None, at_most: float | None
) -> None:
    trigger = getattr(triggers, name)(at_least=at_least, at_most=at_most)
    expected = reference(name, upstream, at_least=at_least, at_most=at_most)
    assert observed(trigger, upstream) == expected


# -- (e) full-scan decide vs the runner's incremental candidates ----------------------------------


def reference_run(drawn: DrawnFlow) -> tuple[Graph, RunView, State]:
    """A naive driver: each step decides over every entity and applies ONE action.

    Bodies run inline with the context the runner gives them; retries wait on a fake
    clock; LOOP iterations run back to back. No store, no threads, no candidates.
    """
    graph = Graph(drawn.flow)
    params = {name: p.default for name, p in graph.parameters.items()}
    params.update(drawn.parameters)
    view = RunView("reference")
    view.start(RunStarted(drawn.flow.name, graph.record(), params), 0)
    clock = [1]

    def apply(node: int | None, index: int | None, new: State, attempt: int = 0) -> None:
        clock[0] += 1
        old = view.flow_state if node is None else state_of_entity(view, node, index)
        view.apply_state(node, index, new, attempt, clock[0], prev=old.name)

    def execute(rt: RunTask) -> None:
        node = graph.nodes[rt.node]
        apply(rt.node, rt.index, Running("Starting task run."), rt.attempt)
        while True:
            ctx: dict[str, Any] = {
                "run_id": view.run_id,
                "flow_name": graph.flow_name,
                "task_name": node.name,
                "task_full_name": node.name if rt.index is None else f"{node.name}[{rt.index}]",
                "task_slug": node.key,
                "map_index": rt.index,
                "parameters": params,
                "task_run_count": rt.attempt,
                "resume": rt.resume,
            }
            if rt.loop_count:
                ctx["task_loop_count"] = rt.loop_count + 1
                ctx["task_loop_result"] = rt.loop_result
            token = set_context(ctx)
            exc: BaseException | None = None
            value: Any = None
            try:
                value = node.task.run(**rt.inputs)
            except Exception as e:
                exc = e
            except signals.Signal as e:
                exc = e
            finally:
                reset_context(token)
            state, ended = outcome_state(exc, value, rt.loop_count + 1)
            if isinstance(state, Looped):
                apply(rt.node, rt.index, state, rt.attempt)
                apply(rt.node, rt.index, Running("Starting task run."), rt.attempt)
                rt = dataclasses.replace(rt, loop_count=state.loop_count, loop_result=state.result)
                continue
            final = settle(
                node,
                state,
                attempt=rt.attempt,
                now=clock[0],
                inputs=rt.inputs,
                parameters=params,
                ended_run=ended,
            )
            apply(rt.node, rt.index, final, rt.attempt)
            return

    def entities(cached: bool) -> list[tuple[int, int | None]]:
        return [
            e for e in all_entities(view) if isinstance(state_of_entity(view, *e), Cached) is cached
        ]

    def summary(d: Decision) -> Any:
        acts = [(a.node, a.index, a.state.name, a.state.message) for a in d.set_states]
        return acts, [(r.node, r.index, r.attempt) for r in d.run], sorted(d.wake, key=repr)

    revisited: set[tuple[int, int | None, int]] = set()
    apply(None, None, Running("Running flow."))
    for _ in range(5000):
        clock[0] += 1
        # what a resume offers decide (decidable) decides what every entity would
        everything = decide(graph, view, clock[0], all_entities(view))
        assert summary(decide(graph, view, clock[0], decidable(view))) == summary(everything)
        # A Cached task is looked at again only on a later pass, which a retry makes
        # (Prefect 1's flow.run): not on every step of this loop.
        decision = decide(graph, view, clock[0], entities(cached=False))
        check_decision(view, decision)
        if decision.set_states:
            action = decision.set_states[0]
            apply(action.node, action.index, action.state)
        elif decision.run:
            rt = decision.run[-1]
            retry = (rt.node, rt.index, rt.attempt)
            if isinstance(state_of_entity(view, rt.node, rt.index), Retrying) and (
                retry not in revisited
            ):
                revisited.add(retry)
                again = decide(graph, view, clock[0], entities(cached=True))
                check_decision(view, again)
                for action in again.set_states:
                    apply(action.node, action.index, action.state)
                if again.set_states:
                    continue  # a cache went invalid: decide again, upstream first
            execute(rt)
        elif decision.wake:
            clock[0] = max(clock[0], min(t for t, _ in decision.wake))
        else:
            break
    else:
        pytest.fail("the reference loop did not settle")
    assert view.problems == []
    return graph, view, final_state(graph, view)


@MANY
@given(flows())
def test_full_scan_and_incremental_candidates_agree(drawn: DrawnFlow) -> None:
    state = run(drawn, MemoryStore())
    graph, view, flow_state = reference_run(drawn)
    assert (flow_state.name, flow_state.message) == (state.name, state.message)
    for node in graph.nodes:
        ref = view.state_of(node.index)
        live = state.result[node.key]
        assert_same_state(node.key, ref, live, stored=False)
        if isinstance(live, Mapped):
            assert isinstance(ref, Mapped)
            for j, (r, s) in enumerate(zip(ref.map_states, live.map_states, strict=True)):
                assert_same_state(f"{node.key}[{j}]", r, s, stored=False)


# -- (f) an interrupted run resumes to the states an uninterrupted run reaches ---------------------


@FEW
@given(flows(), st.data())
def test_an_interrupted_run_resumes_to_the_same_states(
    drawn: DrawnFlow, data: st.DataObject
) -> None:
    labels = sorted(drawn.behaviours, key=lambda s: int(s[1:]))
    assume(labels)
    label = data.draw(st.sampled_from(labels), label="interrupted task")
    handle = drawn.handles[label]
    expected = run(drawn, MemoryStore())

    fired: list[bool] = []
    original = handle.__dict__.get("run")
    body = handle.run

    def interrupted_once(**inputs: Any) -> Any:
        if not fired:
            fired.append(True)
            raise KeyboardInterrupt
        return body(**inputs)

    handle.run = interrupted_once  # type: ignore[method-assign]
    store = MemoryStore()
    try:
        try:
            state = drawn.flow.run(parameters=dict(drawn.parameters), store=store, run_id="crash")
            assert not fired
        except KeyboardInterrupt:
            assert fired
            assert not replay(store, "crash").finished()
            state = resume("crash", drawn.flow, store=store)
    finally:
        if original is None:
            del handle.run
        else:
            handle.run = original  # type: ignore[method-assign]
    event("interrupted, then resumed" if fired else "the task never ran")
    assert (state.name, state.message) == (expected.name, expected.message)
    keys = list(expected.result)
    got = dict(entity_states(state.result.__getitem__, keys))
    for key, want in entity_states(expected.result.__getitem__, keys):
        assert_same_state(key, got[key], want, stored=True)
    view = check_log(Graph(drawn.flow), store.read("crash"))
    assert_views_agree(state.result._view, replay(store, "crash"))
    interrupted = [e for e in view.timeline() if e.new == "Pending" and e.prev == "Running"]
    assert bool(interrupted) == bool(fired)


# -- (g) the decisions outside the task pipeline: interrupt, approve, cancel ----------------------


@FEW
@given(flows(terminating=False), st.data())
def test_resume_and_cancel_decisions_are_legal_and_exact(
    drawn: DrawnFlow, data: st.DataObject
) -> None:
    """On any prefix of a real log: ``interrupt`` ends exactly the open attempts,
    ``approve`` resumes exactly the paused entities asked for, ``cancel`` ends exactly the
    unstarted ones, and every change is in the machine's table."""
    from statecore.decide import approve, cancel, interrupt

    store = MemoryStore()
    state = run(drawn, store)
    log = store.read(state.run_id)
    cut = data.draw(st.integers(1, len(log)), label="events folded")
    view = fold(log[:cut])
    entities = all_entities(view)
    check_decision(view, _as_decision(interrupt(view, ended_at=1)))
    assert {(a.node, a.index) for a in interrupt(view, ended_at=1)} == {
        e for e in entities if isinstance(state_of_entity(view, *e), Running | Looped)
    }
    nodes = data.draw(st.lists(st.integers(0, max(len(view.runs) - 1, 0)), max_size=3))
    approvals = approve(view, nodes if view.runs else [])
    check_decision(view, _as_decision(approvals))
    assert {(a.node, a.index) for a in approvals} == {
        (n, i)
        for n, i in entities
        if n in nodes and isinstance(state_of_entity(view, n, i), Paused)
    }
    cancels = cancel(view)
    check_decision(view, _as_decision(cancels))
    assert {(a.node, a.index) for a in cancels} == {
        e for e in entities if isinstance(state_of_entity(view, *e), Pending)
    }


def _as_decision(actions: list[Any]) -> Decision:
    decision = Decision()
    decision.set_states.extend(actions)
    return decision
