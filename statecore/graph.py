"""The compiled graph: a flow frozen into indexed nodes for ``decide`` and the runner.

A :class:`Graph` is built once per run from a :class:`~statecore.Flow`. Nodes are in a
stable topological order; each knows its inputs (edges and constants), its downstream
nodes, and the task options ``decide`` needs. :meth:`Graph.record` is what the run's
first event stores, so ``replay`` needs no flow object.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from statecore.flow import Edge, Flow
from statecore.fold import resolve_task_ref
from statecore.states import Success
from statecore.tasks import Constant, Parameter, Secret, Task
from statecore.triggers import trigger_name

__all__ = ["Graph", "Input", "Node"]


@dataclass(frozen=True, slots=True)
class Input:
    """One edge (or constant) into a node.

    Attributes:
        edge: the Edge (constants get a synthetic one, as Prefect 1 does for triggers).
        key: the argument name, None for a state-only edge.
        upstream: the upstream node's index, -1 for a constant.
        mapped: the node maps over this input.
        flattened: the input is flattened before mapping.
        constant: the constant's state (``Success("Auto-generated constant value")``).
    """

    edge: Edge
    key: str | None
    upstream: int
    mapped: bool
    flattened: bool
    constant: Success | None = None


class Node:
    """A task of the graph with everything ``decide`` and the runner need."""

    __slots__ = (
        "cache_for_ns",
        "cache_key",
        "checkpoint",
        "downstream",
        "has_handlers",
        "index",
        "inputs",
        "is_parameter",
        "is_secret",
        "key",
        "mapped",
        "max_retries",
        "name",
        "retry_delay_ns",
        "skip_on_upstream_skip",
        "task",
        "timeout",
        "trigger",
        "upstream",
    )

    def __init__(self, index: int, key: str, task: Task, inputs: tuple[Input, ...]) -> None:
        self.index = index
        self.key = key
        self.task = task
        self.name = task.name
        self.inputs = inputs
        self.upstream: tuple[int, ...] = tuple(
            dict.fromkeys(i.upstream for i in inputs if i.upstream >= 0)
        )
        self.downstream: tuple[int, ...] = ()
        self.mapped = any(i.mapped for i in inputs)
        self.trigger = task.trigger
        self.skip_on_upstream_skip = task.skip_on_upstream_skip
        self.max_retries = task.max_retries
        self.retry_delay_ns = task.retry_delay_ns
        self.timeout = task.timeout
        self.checkpoint = task.checkpoint
        self.cache_for_ns = task.cache_for_ns
        self.cache_key = task.cache_key
        self.has_handlers = bool(task.state_handlers or task.on_failure)
        self.is_parameter = isinstance(task, Parameter)
        self.is_secret = isinstance(task, Secret)

    def __repr__(self) -> str:
        return f"<Node {self.index} {self.key}>"


class Graph:
    """A flow compiled for one run."""

    def __init__(self, flow: Flow) -> None:
        flow.validate()
        self.flow = flow
        self.version = flow.version
        self._record: dict[str, Any] | None = None
        self.flow_name = flow.name
        order = flow.sorted_tasks()
        self.index_of: dict[Task, int] = {t: i for i, t in enumerate(order)}
        edges_to: dict[Task, list[Edge]] = {t: [] for t in order}
        for e in flow.ordered_edges():
            edges_to[e.downstream_task].append(e)
        self.nodes: list[Node] = []
        for i, t in enumerate(order):
            inputs = [
                Input(e, e.key, self.index_of[e.upstream_task], e.mapped, e.flattened)
                for e in edges_to[t]
            ]
            for key, value in flow.constants.get(t, {}).items():
                inputs.append(
                    Input(
                        Edge(Constant(value), t, key),
                        key,
                        -1,
                        False,
                        False,
                        Success("Auto-generated constant value", result=value),
                    )
                )
            self.nodes.append(Node(i, flow.slugs[t], t, tuple(inputs)))
        downstream: list[dict[int, None]] = [{} for _ in self.nodes]
        for node in self.nodes:
            for u in node.upstream:
                downstream[u][node.index] = None
        for node, down in zip(self.nodes, downstream, strict=True):
            node.downstream = tuple(down)
        self.by_key: dict[str, int] = {n.key: n.index for n in self.nodes}
        self.reference: tuple[int, ...] = tuple(
            sorted(self.index_of[t] for t in flow.reference_tasks())
        )
        self.terminal: tuple[int, ...] = tuple(
            sorted(self.index_of[t] for t in flow.terminal_tasks())
        )
        self.parameters: dict[str, Parameter] = {
            n.task.name: n.task for n in self.nodes if isinstance(n.task, Parameter)
        }

    @classmethod
    def of(cls, flow: Flow) -> Graph:
        """The compiled graph of ``flow``, reused while the flow is unchanged."""
        cached: Graph | None = getattr(flow, "_compiled", None)
        if cached is not None and cached.version == flow.version:
            return cached
        graph = cls(flow)
        flow._compiled = graph  # type: ignore[attr-defined]
        return graph

    def __len__(self) -> int:
        return len(self.nodes)

    def node_for(self, ref: Any) -> Node:
        """The node for a task handle, a key, or a name unique in the flow.

        Raises:
            KeyError: unknown, or a name shared by several tasks (listing their keys).
        """
        return self.nodes[resolve_task_ref(ref, self.by_key, self.index_of, self.names())]

    def names(self) -> dict[str, list[int]]:
        """Task name -> node indices."""
        out: dict[str, list[int]] = {}
        for n in self.nodes:
            out.setdefault(n.name, []).append(n.index)
        return out

    def record(self) -> dict[str, Any]:
        """The graph as recorded in the run's first event (plain data)."""
        if self._record is None:
            self._record = self._make_record()
        return self._record

    def _make_record(self) -> dict[str, Any]:
        tasks = [
            {
                "key": n.key,
                "name": n.name,
                "mapped": n.mapped,
                "trigger": trigger_name(n.trigger),
                "skip_on_upstream_skip": n.skip_on_upstream_skip,
                "max_retries": n.max_retries,
                "checkpoint": n.checkpoint,
                "kind": "parameter" if n.is_parameter else "secret" if n.is_secret else "task",
            }
            for n in self.nodes
        ]
        edges = [
            [self.nodes[i.upstream].key, n.key, i.key, i.mapped, i.flattened]
            for n in self.nodes
            for i in n.inputs
            if i.upstream >= 0
        ]
        structure = {
            "tasks": tasks,
            "edges": edges,
            "constants": {
                n.key: sorted(i.key for i in n.inputs if i.upstream < 0 and i.key)
                for n in self.nodes
                if any(i.upstream < 0 for i in n.inputs)
            },
            "reference": [self.nodes[i].key for i in self.reference],
            "terminal": [self.nodes[i].key for i in self.terminal],
        }
        fingerprint = hashlib.sha256(
            json.dumps(structure, sort_keys=True, default=str).encode()
        ).hexdigest()
        code: dict[str, str] = {}
        sources: dict[int, str] = {}
        for n in self.nodes:
            fn = getattr(n.task.run, "__func__", n.task.run)
            digest = sources.get(id(fn))
            if digest is None:
                digest = hashlib.sha256(n.task.code_source().encode()).hexdigest()[:16]
                sources[id(fn)] = digest
            code[n.key] = digest
        return {**structure, "fingerprint": fingerprint, "code": code}
