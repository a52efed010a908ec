"""Rerun a finished (or stopped) run from one task: a new run that redoes only part of it.

``rerun(run_id, flow, from_task)`` starts a **new** run of ``flow`` with the parent run's
parameters. Every task that is not ``from_task`` or downstream of it starts in the final
state its parent run logged (result included) and does not run again; ``from_task`` and
everything downstream of it run as usual. The new run's first event records the parent
run's id (``RunMeta.parent_run``, shown by ``statecore show``).

A task of the parent run that never finished (still Pending, Paused, Retrying or
interrupted) has no final state to reuse: it runs in the new run too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statecore.backends import open_store
from statecore.backends.base import Store
from statecore.errors import FlowChanged
from statecore.flow import Flow
from statecore.graph import Graph
from statecore.runners.local import LocalRunner, describe_changes, replay, run_flow
from statecore.states import Mapped, State
from statecore.view import RunView

__all__ = ["plan_rerun", "rerun"]


def plan_rerun(
    graph: Graph, view: RunView, from_task: Any, *, allow_changed: bool = False
) -> dict[int, State]:
    """The states a rerun from ``from_task`` reuses: node index -> the parent's final state.

    Args:
        graph: the flow to rerun, compiled.
        view: the parent run, folded.
        from_task: a task handle, key, or unique name: it and its downstream tasks run.
        allow_changed: rerun even if the flow's structure changed since the parent run;
            tasks are then matched by key, and tasks the parent run did not have run.

    Raises:
        FlowChanged: the run belongs to another flow, or the structure changed (without
            ``allow_changed``).
        KeyError: ``from_task`` names no task of the flow, or an ambiguous name.
    """
    if view.flow_name != graph.flow_name:
        raise FlowChanged(
            f"run {view.run_id!r} is a run of flow {view.flow_name!r}, not {graph.flow_name!r}"
        )
    record = graph.record()
    if view.graph.get("fingerprint") != record["fingerprint"] and not allow_changed:
        raise FlowChanged(
            f"flow {graph.flow_name!r} changed since run {view.run_id!r}: "
            f"{describe_changes(view.graph, record)}. Pass allow_changed=True "
            "(--allow-changed) to rerun anyway"
        )
    start = graph.node_for(from_task).index
    rerun_nodes = {start}
    frontier = [start]
    while frontier:
        for d in graph.nodes[frontier.pop()].downstream:
            if d not in rerun_nodes:
                rerun_nodes.add(d)
                frontier.append(d)
    reuse: dict[int, State] = {}
    for node in graph.nodes:
        if node.index in rerun_nodes:
            continue
        parent_index = view.by_key.get(node.key)
        if parent_index is None:
            continue
        state = view.state_of(parent_index)
        if not state.is_finished():
            continue
        if isinstance(state, Mapped) and any(not child.is_finished() for child in state.map_states):
            continue
        reuse[node.index] = state
    return reuse


def rerun(
    run_id: str,
    flow: Flow,
    from_task: Any,
    *,
    store: Store | str | None = None,
    new_run_id: str | None = None,
    secrets: Mapping[str, str] | None = None,
    runner: LocalRunner | None = None,
    allow_changed: bool = False,
) -> State:
    """Start a new run of ``flow`` that reruns ``from_task`` and its downstream tasks.

    Args:
        run_id: the parent run.
        flow: the same flow (its code may have changed; its structure may not, unless
            ``allow_changed``).
        from_task: a task handle, key, or name unique in the flow.
        store: where the parent run is and the new one goes (default: as ``flow.run``).
        new_run_id: the new run's id (default: a new uuid).
        secrets: as for ``flow.run``.
        runner: as for ``flow.run``.
        allow_changed: see :func:`plan_rerun`.

    Returns:
        The new run's state (``.run_id`` is the new run's id).

    Raises:
        RunNotFound: no run ``run_id``.
        FlowChanged: another flow, or a changed structure.
        KeyError: ``from_task`` is not a task of the flow.
        ValueError: ``new_run_id`` is already taken.
    """
    s = store if isinstance(store, Store) else open_store(store)
    try:
        view = replay(s, run_id)
        graph = Graph(flow)
        reuse = plan_rerun(graph, view, from_task, allow_changed=allow_changed)
        if new_run_id is not None and s.head(new_run_id) > 0:
            raise ValueError(f"run id {new_run_id!r} is already taken in store {s.url}")
        return run_flow(
            flow,
            parameters=view.parameters,
            store=s,
            run_id=new_run_id,
            secrets=secrets,
            runner=runner,
            parent_run=run_id,
            reuse=reuse,
        )
    finally:
        if s is not store:
            s.close()
