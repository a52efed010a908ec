"""Results that were never stored, recomputed when a resumed run needs them.

A secret's value and the result of a ``checkpoint=False`` task never reach the log: the
log holds :data:`~statecore.states.NOT_PERSISTED` in their place. A run that continues in
the same process keeps the values in memory; a resume (or a rerun) that needs one as a
task's input runs the upstream task's body again, in the driver's thread, and logs a
``rehydrate`` note saying so.
"""

from __future__ import annotations

from typing import Any

from statecore.decide import RunTask, task_inputs, upstream_states
from statecore.errors import StatecoreError
from statecore.fold import RunView
from statecore.graph import Graph
from statecore.runners.bodies import Bodies
from statecore.runners.recorder import Recorder
from statecore.states import NOT_PERSISTED

__all__ = ["Unstored"]


class Unstored:
    """The values of one run that the log does not hold, and how to get them back."""

    def __init__(self, graph: Graph, view: RunView, bodies: Bodies, record: Recorder) -> None:
        self.graph = graph
        self.view = view
        self.bodies = bodies
        self.record = record
        self.values: dict[tuple[int, int | None], Any] = {}

    def keep(self, node_i: int, index: int | None, value: Any) -> None:
        """Remember a value that is not written to the log."""
        self.values[(node_i, index)] = value

    def rehydrate(self, rt: RunTask) -> RunTask:
        """``rt`` with every input that was never stored recomputed.

        Raises:
            StatecoreError: an upstream body failed when run again.
        """
        node = self.graph.nodes[rt.node]
        inputs = dict(rt.inputs)
        for inp in node.inputs:
            if inp.key is None or inputs.get(inp.key) is not NOT_PERSISTED:
                continue
            inputs[inp.key] = self._recompute(inp.upstream)
        return RunTask(
            rt.node, rt.index, inputs, rt.attempt, rt.resume, rt.loop_count, rt.loop_result
        )

    def _recompute(self, node_i: int) -> Any:
        key = (node_i, None)
        if key in self.values:
            return self.values[key]
        node = self.graph.nodes[node_i]
        upstream = upstream_states(self.graph, self.view, node, None) or {}
        inputs = task_inputs(node, upstream)
        for inp in node.inputs:
            if inp.key is not None and inputs.get(inp.key) is NOT_PERSISTED:
                inputs[inp.key] = self._recompute(inp.upstream)
        self.record.note(
            "rehydrate", f"re-ran {node.key} to recompute a result that was not stored", None
        )
        exc, value, _, _ = self.bodies.execute(RunTask(node_i, None, inputs, 1))
        if exc is not None:
            raise StatecoreError(
                f"could not recompute the unstored result of {node.key}: {exc!r}"
            ) from exc
        self.values[key] = value
        return value
