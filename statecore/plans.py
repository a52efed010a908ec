"""Plans a runner carries out, computed from the log and the flow alone (pure).

* :func:`plan_rerun`: which of a parent run's final states a rerun from one task reuses
  (the rerun itself is :func:`statecore.runners.local.rerun`);
* :func:`describe_changes`: how two recorded graphs differ, for the error that refuses
  to resume or rerun a flow whose structure changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statecore.errors import FlowChanged
from statecore.fold import RunView
from statecore.graph import Graph
from statecore.states import Mapped, State

__all__ = ["describe_changes", "plan_rerun"]


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


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """A short account of how two recorded graphs differ."""
    parts: list[str] = []
    old_keys = [t["key"] for t in old.get("tasks", [])]
    new_keys = [t["key"] for t in new.get("tasks", [])]
    added = [k for k in new_keys if k not in old_keys]
    removed = [k for k in old_keys if k not in new_keys]
    if added:
        parts.append("tasks added: " + ", ".join(added))
    if removed:
        parts.append("tasks removed: " + ", ".join(removed))
    old_edges = {tuple(e) for e in old.get("edges", [])}
    new_edges = {tuple(e) for e in new.get("edges", [])}
    if old_edges != new_edges:
        gone = sorted(f"{e[0]}->{e[1]}" for e in old_edges - new_edges)
        made = sorted(f"{e[0]}->{e[1]}" for e in new_edges - old_edges)
        if gone:
            parts.append("edges removed or changed: " + ", ".join(gone))
        if made:
            parts.append("edges added or changed: " + ", ".join(made))
    old_tasks = {t["key"]: t for t in old.get("tasks", [])}
    for t in new.get("tasks", []):
        before = old_tasks.get(t["key"])
        if before is None:
            continue
        for field in ("mapped", "trigger", "skip_on_upstream_skip"):
            if before.get(field) != t.get(field):
                parts.append(f"{t['key']}: {field} {before.get(field)!r} -> {t.get(field)!r}")
    if old.get("reference") != new.get("reference"):
        parts.append("reference tasks changed")
    return "; ".join(parts) or "structure changed"
