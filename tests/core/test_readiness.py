"""The frontier queues exactly what a change may have made ready (pure; no store).

The driver's property tests (tests/core/test_properties.py) run it against the naive
reference driver on drawn flows; these pin its rules one by one.
"""

from __future__ import annotations

from statecore import Flow, task
from statecore.events import RunStarted
from statecore.fold import RunView
from statecore.graph import Graph
from statecore.readiness import Frontier
from statecore.states import Cached, Mapped, Pending, Running, State, Success


@task
def source() -> list[int]:
    return [1, 2, 3]


@task
def inc(x: int) -> int:
    return x + 1


@task
def total(xs: list[int]) -> int:
    return sum(xs)


def _node(graph: Graph, name: str) -> int:
    return next(n.index for n in graph.nodes if n.name == name)


def _chain() -> tuple[Graph, Frontier]:
    with Flow("chain") as flow:
        total(inc.map(source()))
    graph = Graph.of(flow)
    view = RunView("r")
    view.start(RunStarted("chain", graph.record(), {}), 0)
    frontier = Frontier(graph, view)
    frontier.add_all((n, None) for n in range(len(graph.nodes)))
    frontier.count()
    return graph, frontier


def test_counting_leaves_only_unblocked_tasks_queued() -> None:
    graph, frontier = _chain()
    assert frontier.take() == [(_node(graph, "source"), None)]
    assert frontier.blocked(_node(graph, "inc")) and frontier.blocked(_node(graph, "total"))
    assert frontier.take() == []


def _change(frontier: Frontier, node: int, index: int | None, new: State) -> None:
    """Fold a change, then tell the frontier, as the recorder does."""
    view = frontier.view
    old = view.runs[node].state if index is None else view.children[node][index].state
    view.apply_state(node, index, new, 1, 0)
    frontier.after(node, index, old, new)


def test_a_finished_upstream_releases_a_mapper_and_a_mapped_parent_its_children() -> None:
    graph, frontier = _chain()
    src, mapped = _node(graph, "source"), _node(graph, "inc")
    frontier.take()
    _change(frontier, src, None, Running())
    _change(frontier, src, None, Success(result=[1, 2, 3]))
    assert frontier.take() == [(mapped, None)]
    _change(frontier, mapped, None, Mapped(n_map_states=2))
    assert frontier.take() == [(mapped, 0), (mapped, 1)]
    # the reducer waits for every child: a Mapped parent alone does not release it
    assert frontier.blocked(_node(graph, "total"))


def test_an_invalid_cache_blocks_the_downstream_again() -> None:
    graph, frontier = _chain()
    src, mapped = _node(graph, "source"), _node(graph, "inc")
    frontier.take()
    _change(frontier, src, None, Running())
    _change(frontier, src, None, Cached(result=[1]))
    assert not frontier.blocked(mapped)
    frontier.take()
    _change(frontier, src, None, Pending("Cache was invalid"))
    assert frontier.blocked(mapped)
    assert frontier.take() == [(src, None)]


def test_retries_wake_in_time_order() -> None:
    _, frontier = _chain()
    frontier.take()
    frontier.wait(30, (1, None))
    frontier.wait(10, (2, 0))
    assert frontier.next_wake() == 10
    frontier.wake(20)
    assert frontier.take() == [(2, 0)]
    assert frontier.next_wake() == 30
    frontier.wake(30)
    assert frontier.take() == [(1, None)] and frontier.next_wake() is None
