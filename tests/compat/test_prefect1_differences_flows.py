"""Flow and task behaviour that Prefect 1.4.1's core/test_flow.py, core/test_task.py and
core/test_task_map.py found missing from statecore (scripts/prefect1_tests.py), each pinned
here in our own words."""

from __future__ import annotations

import pytest

from statecore import Flow, Parameter, Task, case, flatten, signals, task, unmapped
from statecore.backends import MemoryStore
from statecore.compat.authoring import Flow as PrefectFlow
from statecore.compat.authoring import raise_on_exception
from statecore.errors import FlowDefinitionError
from statecore.states import Failed, Pending, Running, State, Success
from statecore.tasks import edge_options, mapped


@task
def double(x: int) -> int:
    return 2 * x


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


# -- flatten over a constant ----------------------------------------------------------------


def test_flattening_a_constant_of_plain_values_maps_over_it_unchanged(store: MemoryStore) -> None:
    with Flow("flat-constant") as flow:
        plain = double.map(flatten([4, 5]))
        nested = double.map(flatten([[4], [5, 6]]))
    state = flow.run(store=store)
    assert state.is_successful()
    assert state.result[plain].result == [8, 10]
    assert state.result[nested].result == [8, 10, 12]


def test_flattening_a_one_element_constant_gives_one_child(store: MemoryStore) -> None:
    with Flow("flat-one") as flow:
        one = add.map(x=flatten([1]), y=flatten([[10]]))
    state = flow.run(store=store)
    assert state.result[one].is_mapped()
    assert state.result[one].result == [11]


def test_flattening_a_non_sequence_constant_is_still_refused_when_building() -> None:
    with Flow("flat-scalar"), pytest.raises(FlowDefinitionError, match="cannot map over"):
        double.map(flatten(3))


# -- flow.run inside its own with block -----------------------------------------------------


def test_running_a_flow_inside_its_own_with_block_raises(store: MemoryStore) -> None:
    with Flow("half-built") as flow:
        double(1)
        with pytest.raises(RuntimeError, match="within a `Flow` context manager"):
            flow.run(store=store)
    assert store.list_runs() == []
    assert flow.run(store=store).is_successful()


def test_another_flow_may_run_inside_a_with_block(store: MemoryStore) -> None:
    with Flow("inner") as inner:
        double(2)
    with Flow("outer"):
        assert inner.run(store=store).is_successful()


# -- Flow.replace ---------------------------------------------------------------------------


def test_replace_moves_edges_constants_and_reference_role(store: MemoryStore) -> None:
    @task
    def triple(x: int) -> int:
        return 3 * x

    with Flow("swap") as flow:
        x = Parameter("x")
        first = double(x)
        second = add(first, 100)
    flow.set_reference_tasks([first])
    replacement = triple.copy()
    flow.replace(first, replacement)
    assert first not in flow.tasks and replacement in flow.tasks
    assert flow.upstream_tasks(replacement) == {x}
    assert flow.downstream_tasks(replacement) == {second}
    assert flow.reference_tasks() == {replacement}
    state = flow.run(x=5, store=store)
    assert state.result[replacement].result == 15
    assert state.result[second].result == 115


def test_replace_keeps_a_replaced_tasks_constant_inputs(store: MemoryStore) -> None:
    with Flow("swap-constants") as flow:
        old = add(1, 2)
    new = add.copy()
    flow.replace(old, new)
    assert flow.run(store=store).result[new].result == 3


def test_replace_with_a_collection_makes_it_a_task(store: MemoryStore) -> None:
    with Flow("swap-list") as flow:
        xs = Parameter("xs")
        summed = total(xs)
    flow.replace(xs, [1, 2, 3])
    assert not flow.parameters()
    assert flow.run(store=store).result[summed].result == 6


def test_replace_refuses_a_task_not_in_the_flow() -> None:
    flow = Flow("swap-missing", tasks=[Task()])
    with pytest.raises(FlowDefinitionError, match="not found"):
        flow.replace(Task(), Task())


# -- a bare Task --------------------------------------------------------------------------


def test_a_bare_task_succeeds_with_none(store: MemoryStore) -> None:
    join = Task(name="join")
    flow = Flow("bare", tasks=[join])
    state = flow.run(store=store)
    assert state.is_successful()
    assert state.result[join].result is None


# -- prefect.Flow.run(state=...) ------------------------------------------------------------


def test_a_finished_initial_state_is_returned_and_nothing_runs(store: MemoryStore) -> None:
    ran: list[int] = []

    @task
    def work() -> None:
        ran.append(1)

    flow = PrefectFlow("given-state", tasks=[work])
    state = flow.run(state=Failed("given"), store=store)
    assert state.is_failed() and state.message == "given"
    assert state.result[work].is_pending()
    assert state.result[work].message == "Task not run."
    assert ran == [] and store.list_runs() == []


def test_a_finished_initial_state_keeps_the_task_states_it_holds(store: MemoryStore) -> None:
    done = Task(name="done")
    later = Task(name="later")
    flow = PrefectFlow("given-results", tasks=[done, later])
    state = flow.run(state=Success("given", result={done: Success("kept")}), store=store)
    assert state.result[done].message == "kept"
    assert state.result[later].is_pending()


@pytest.mark.parametrize("initial", [Pending(), Running()])
def test_a_pending_or_running_initial_state_runs_the_flow(
    store: MemoryStore, initial: Pending | Running
) -> None:
    with PrefectFlow("given-pending") as flow:
        bad = add("5", 5)
    state = flow.run(state=initial, store=store)
    assert state.is_failed()
    assert state.result[bad].is_failed()
    assert len(store.list_runs()) == 1


# -- the mapped() annotation ----------------------------------------------------------------


def test_mapped_maps_one_argument_of_a_plain_call(store: MemoryStore) -> None:
    @task
    def numbers() -> list[int]:
        return [1, 2, 3]

    with Flow("mapped-arg") as flow:
        sums = add(x=mapped(numbers()), y=10)
    state = flow.run(store=store)
    assert state.result[sums].is_mapped()
    assert state.result[sums].result == [11, 12, 13]


def test_mapped_leaves_plain_upstream_tasks_unmapped(store: MemoryStore) -> None:
    order: list[str] = []

    @task
    def first() -> None:
        order.append("first")

    @task
    def show(x: int) -> int:
        order.append(f"show {x}")
        return x

    with Flow("mapped-upstream") as flow:
        shown = show(x=mapped([1, 2]), upstream_tasks=[first()])
    state = flow.run(store=store)
    assert state.result[shown].result == [1, 2]
    assert order[0] == "first" and sorted(order[1:]) == ["show 1", "show 2"]


def test_nested_annotations_combine_the_inner_one_winning(store: MemoryStore) -> None:
    assert edge_options(unmapped(mapped([1])), False)[1:] == (True, False)
    assert edge_options(mapped(unmapped([1])), True)[1:] == (False, False)
    assert edge_options(mapped(flatten([[1]])), False)[1:] == (True, True)
    with Flow("mapped-flat") as flow:
        flat = double(x=mapped(flatten([[1], [2, 3]])))
    assert flow.run(store=store).result[flat].result == [2, 4, 6]


# -- operators on tasks -------------------------------------------------------------------


def test_operators_on_tasks_build_tasks_of_the_flow(store: MemoryStore) -> None:
    with Flow("operators") as flow:
        x = Parameter("x")
        results = {
            "add": x + 1,
            "radd": 1 + x,
            "sub": x - 2,
            "rsub": 10 - x,
            "mul": x * 3,
            "div": x / 4,
            "floordiv": x // 4,
            "mod": x % 4,
            "pow": x**2,
            "rpow": 2**x,
            "gt": x > 5,
            "ge": x >= 6,
            "lt": x < 5,
            "le": x <= 6,
            "and": x & 0,
            "or": x.or_(0),
            "eq": x.is_equal(6),
            "ne": x.is_not_equal(6),
            "not": x.not_(),
            "chained": (x + 1) * (x - 1),
        }
    state = flow.run(x=6, store=store)
    got = {name: state.result[t].result for name, t in results.items()}
    assert got == {
        "add": 7, "radd": 7, "sub": 4, "rsub": 4, "mul": 18, "div": 1.5, "floordiv": 1,
        "mod": 2, "pow": 36, "rpow": 64, "gt": True, "ge": True, "lt": False, "le": True,
        "and": 0, "or": 6, "eq": True, "ne": False, "not": False, "chained": 35,
    }  # fmt: skip
    assert results["add"].name == "Add" and results["gt"].name == "GreaterThan"


def test_tasks_still_compare_by_identity() -> None:
    a, b = Task(), Task()
    assert a == a and a != b
    assert len({a, b, a}) == 2


def test_pipe_makes_a_state_dependency(store: MemoryStore) -> None:
    order: list[str] = []

    @task
    def step(label: str) -> None:
        order.append(label)

    one, two, three = step.copy(), step.copy(), step.copy()
    with Flow("piped") as flow:
        first = one("one")
        second = two("two")
        third = three("three")
        last = first | second | third
    assert last is third
    assert flow.upstream_tasks(second) == {first} and flow.upstream_tasks(third) == {second}
    flow.run(store=store)
    assert order == ["one", "two", "three"]


# -- Flow.update --------------------------------------------------------------------------


def test_update_takes_tasks_edges_and_constant_inputs(store: MemoryStore) -> None:
    with Flow("source") as source:
        x = Parameter("x")
        d = x["d"] + 4
    target = Flow("target")
    target.update(source)
    assert target.tasks == source.tasks and target.edges == source.edges
    assert target.run(x={"d": 42}, store=store).result[d].result == 46
    assert len(source.tasks) == 3


def test_update_can_share_parameters_and_reference_tasks(store: MemoryStore) -> None:
    with Flow("theirs") as theirs:
        their_x = Parameter("x")
        doubled = double(their_x)
    with Flow("ours") as ours:
        our_x = Parameter("x")
        added = add(our_x, 1)
    ours.set_reference_tasks([added])
    ours.update(theirs, merge_parameters=True, merge_reference_tasks=True)
    assert ours.parameters() == {their_x}
    assert ours.reference_tasks() == {added, doubled}
    state = ours.run(x=5, store=store)
    assert state.result[added].result == 6 and state.result[doubled].result == 10


# -- raise_on_exception -------------------------------------------------------------------


@task
def explode(x: int) -> int:
    if x == 2:
        raise KeyError(f"no {x}")
    return x


def test_raise_on_exception_raises_the_first_failed_body_once_the_run_ends(
    store: MemoryStore,
) -> None:
    ran: list[int] = []

    @task
    def later() -> None:
        ran.append(1)

    with Flow("debugging") as flow:
        explode.map([1, 2, 3])
        later()
    with pytest.raises(KeyError, match="no 2"):
        flow.run(store=store, raise_on_exception=True)
    assert ran == [1]
    (meta,) = store.list_runs()
    assert meta.state == "Failed"


def test_raise_on_exception_leaves_signals_and_successes_as_states(store: MemoryStore) -> None:
    @task
    def refuse() -> None:
        raise signals.FAIL("by design")

    with Flow("signals-stay") as flow:
        refused = refuse()
        fine = explode(1)
    state = flow.run(store=store, raise_on_exception=True)
    assert state.result[refused].is_failed() and state.result[fine].is_successful()


def test_prefects_raise_on_exception_block_asks_flow_run_to_raise(store: MemoryStore) -> None:
    with PrefectFlow("prefect-debugging") as flow:
        explode(2)
    assert flow.run(store=store).is_failed()
    with raise_on_exception(), pytest.raises(KeyError):
        flow.run(store=store)
    assert flow.run(store=store).is_failed()


# -- case blocks and constants ------------------------------------------------------------


def test_a_parameter_first_used_in_a_case_block_stays_a_root_task(store: MemoryStore) -> None:
    with Flow("case-parameter") as flow:
        x = Parameter("x")
        cond = double(1)
        with case(cond, 2):
            taken = add(x, 1)
        with case(cond, 3):
            not_taken = add(x, -1)
    assert flow.upstream_tasks(x) == set()
    state = flow.run(x=1, store=store)
    assert state.result[taken].result == 2
    assert state.result[not_taken].is_skipped()


def test_mapping_over_a_range_constant_maps_over_its_elements(store: MemoryStore) -> None:
    with Flow("range") as flow:
        doubled = double.map(range(4))
    state = flow.run(store=store)
    assert state.is_successful()
    assert state.result[doubled].result == [0, 2, 4, 6]


def test_chain_runs_tasks_one_after_another(store: MemoryStore) -> None:
    order: list[str] = []

    @task
    def step(label: str) -> None:
        order.append(label)

    with Flow("chained") as flow:
        steps = [step(f"s{i}") for i in range(3)]
    edges = flow.chain(*reversed(steps))
    assert [(e.upstream_task, e.downstream_task) for e in edges] == [
        (steps[2], steps[1]),
        (steps[1], steps[0]),
    ]
    flow.run(store=store)
    assert order == ["s2", "s1", "s0"]


def test_a_reducer_over_a_flattened_map_reads_the_flat_list(store: MemoryStore) -> None:
    """``reduce(flatten(mapped))`` gets the children's lists flattened one level, as in
    Prefect 1 (it got the list of lists; found by test_task_map's flatmap tests)."""

    @task
    def pair(x: int) -> list[int]:
        return [x, x + 1]

    @task
    def collect(xs: list[int]) -> list[int]:
        return xs

    with Flow("flat-reduce") as flow:
        out = collect(flatten(pair.map([1, 3])))
    state = flow.run(store=store)
    assert state.result[out].result == [1, 2, 3, 4]


def test_flow_run_on_a_schedule_asks_the_schedule_s_next(store: MemoryStore) -> None:
    """A Schedule subclass that overrides ``next`` decides flow.run's slots, as Prefect
    1's flow.run asks ``schedule.next(...)`` (statecore read the clocks around it)."""
    from datetime import UTC, datetime, timedelta

    from statecore.schedules import Schedule, clocks

    asked: list[object] = []
    soon = datetime.now(UTC) + timedelta(milliseconds=50)

    class OneSlot(Schedule):
        def next(self, n, after=None, return_events=False):  # type: ignore[no-untyped-def]
            asked.append(after)
            if len(asked) > 1:
                return []
            event = clocks.ClockEvent(soon)
            return [event] if return_events else [event.start_time]

    ran: list[int] = []

    @task
    def work() -> int:
        ran.append(1)
        return 1

    with Flow("one-slot", schedule=OneSlot(clocks=[])) as flow:
        work()
    state = flow.run(store=store)
    assert state.is_successful() and ran == [1]
    assert len(asked) == 2  # the slot, then "no more"


def test_each_loop_iteration_is_a_new_task_run_with_its_own_retries(store: MemoryStore) -> None:
    """After LOOP, Prefect 1 starts the next iteration as a new task run: task_run_count
    is 1 again and max_retries counts afresh (statecore kept counting, so an iteration
    failing after an earlier iteration's retry was not retried)."""
    from datetime import timedelta

    from statecore import context
    from statecore.runners import replay

    seen: list[tuple[int, int]] = []

    @task(max_retries=1, retry_delay=timedelta(0))
    def looper() -> int:
        loop, run = context.get("task_loop_count", 1), context.get("task_run_count")
        seen.append((loop, run))
        if loop in (2, 4) and run == 1:
            raise ValueError("once per iteration")
        if loop < 5:
            raise signals.LOOP(result=loop)
        return loop

    with Flow("loop-retries") as flow:
        out = looper()
    state = flow.run(store=store)
    assert state.is_successful() and state.result[out].result == 5
    assert seen == [(1, 1), (2, 1), (2, 2), (3, 1), (4, 1), (4, 2), (5, 1)]
    assert replay(store, state.run_id).task_states[out] == state.result[out]


def test_a_handler_raising_fail_on_success_is_retried_and_may_answer_a_pause(
    store: MemoryStore,
) -> None:
    """Prefect 1's retry step settles what the state handlers return: FAIL raised by a
    handler on Running -> Success is retried by max_retries (it was final), and a handler
    may answer a manual_only pause with Resume on each retry (Retrying -> Resume)."""
    from datetime import timedelta

    from statecore import triggers
    from statecore.runners import replay
    from statecore.states import Paused, Resume

    runs: list[int] = []

    def handler(obj: object, old: State, new: State) -> State | None:
        if isinstance(new, Paused):
            return Resume()
        if old.is_running():
            raise signals.FAIL("refused by the handler")
        return None

    @task(
        max_retries=2,
        retry_delay=timedelta(0),
        state_handlers=[handler],
        trigger=triggers.manual_only,
    )
    def gated() -> None:
        runs.append(1)

    flow = Flow("handler-retries", tasks=[gated])
    state = flow.run(store=store)
    assert state.is_failed() and len(runs) == 3
    assert state.result[gated].message == "refused by the handler"
    changes = [(e.prev, e.new) for e in replay(store, state.run_id).timeline() if e.task]
    assert changes.count(("Retrying", "Resume")) == 2


def test_an_edge_hashes_as_its_fields_even_after_a_copy_or_a_pickle() -> None:
    # Edge keeps its hash (upstream states are keyed by edge for every task run); a copy
    # or an unpickled edge holds new tasks, hashed by identity, so it must hash anew
    import copy

    import cloudpickle  # how a Dask runner ships a flow's tasks

    @task
    def up() -> int:
        return 1

    @task
    def down(x: int) -> int:
        return x

    with Flow("edges") as flow:
        down(up())
    (edge,) = flow.edges
    twin = type(edge)(edge.upstream_task, edge.downstream_task, edge.key)
    assert twin == edge and hash(twin) == hash(edge) and {edge: 1}[twin] == 1
    for other in (copy.deepcopy(edge), cloudpickle.loads(cloudpickle.dumps(edge))):
        fields = (other.upstream_task, other.downstream_task, other.key, False, False)
        assert other.upstream_task is not edge.upstream_task
        assert hash(other) == hash(fields) and {other: 1}[other] == 1
        assert repr(other) == repr(edge)
