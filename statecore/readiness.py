"""Readiness: which tasks the loop should decide next, kept up to date change by change.

:func:`~statecore.decide.decide` says what to do with a task; this says which tasks are
worth asking about. A :class:`Frontier` holds the candidates (tasks and mapped children
whose inputs may have changed), the retries waiting for their time, and, per task, how many
upstream tasks it still waits for (see :func:`~statecore.decide.blocker_counts`). Every
state change the recorder folds is passed to :meth:`Frontier.after`, which queues exactly
the entities that change may have made ready. Pure: no clock, no I/O; the driver passes
``now``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from statecore.decide import blocker_counts
from statecore.fold import RunView
from statecore.graph import Graph
from statecore.states import Cached, Finished, Looped, Mapped, Pending, State

__all__ = ["Entity", "Frontier"]

#: a task (node index, None) or a mapped child (node index, child index)
Entity = tuple[int, int | None]


class Frontier:
    """The entities to decide next, the retries to wake, and the tasks still blocked."""

    def __init__(self, graph: Graph, view: RunView) -> None:
        self.graph = graph
        self.view = view
        #: entities whose inputs may have changed, in the order they were queued
        self.candidates: dict[Entity, None] = {}
        #: (when, entity) of retries waiting for their time, a heap
        self.waits: list[tuple[int, Entity]] = []
        #: per task, the upstream tasks it still waits for (empty until :meth:`count`)
        self.blockers: list[int] = []
        self.needs_complete: list[dict[int, bool]] = []

    def add(self, entity: Entity) -> None:
        self.candidates[entity] = None

    def add_all(self, entities: Iterable[Entity]) -> None:
        self.candidates.update(dict.fromkeys(entities))

    def take(self) -> list[Entity]:
        """The queued candidates, in order; the queue is left empty."""
        batch = list(self.candidates)
        self.candidates.clear()
        return batch

    def clear(self) -> None:
        self.candidates.clear()
        self.waits.clear()

    def count(self) -> None:
        """Count each task's blockers from the view as it is now; a task still blocked
        is not a candidate until its last blocker finishes."""
        self.needs_complete, self.blockers = blocker_counts(self.graph, self.view)
        for node_i, waiting in enumerate(self.blockers):
            if waiting:
                self.candidates.pop((node_i, None), None)

    def blocked(self, node_i: int) -> bool:
        return bool(self.blockers) and self.blockers[node_i] > 0

    # -- retries waiting for their time -------------------------------------------------

    def wait(self, when: int, entity: Entity) -> None:
        heapq.heappush(self.waits, (when, entity))

    def next_wake(self) -> int | None:
        return self.waits[0][0] if self.waits else None

    def wake(self, now: int) -> None:
        """Queue every retry whose time has come."""
        waits = self.waits
        while waits and waits[0][0] <= now:
            _, entity = heapq.heappop(waits)
            self.candidates[entity] = None

    # -- changes --------------------------------------------------------------------------

    def after(self, node_i: int, index: int | None, old: State, new: State) -> None:
        """Queue the entities whose inputs this change may have completed."""
        if not isinstance(new, Finished) or isinstance(new, Looped):
            if isinstance(new, Pending):
                self.candidates[(node_i, index)] = None
                if type(old) is Cached and self.blockers:
                    self._reopened(node_i, index)
            return
        view = self.view
        if index is None:
            self._release(node_i, complete=False)
            if isinstance(new, Mapped):
                for j in range(new.n_map_states):
                    self.candidates[(node_i, j)] = None
                if new.n_map_states:
                    return
            self._release(node_i, complete=True)
            return
        nodes = self.graph.nodes
        for d in nodes[node_i].downstream:
            # the downstream may be narrower (zipped with a shorter list): no such child
            if nodes[d].mapped and index < len(view.children.get(d, ())):
                self.candidates[(d, index)] = None
        if view.unfinished_children.get(node_i, 0) == 0:
            self._release(node_i, complete=True)

    def _reopened(self, node_i: int, index: int | None) -> None:
        """An invalid cache sent a finished task (or mapped child) back to Pending: what
        waits for it waits again, until :meth:`_release` counts it finished anew."""
        downstream = self.graph.nodes[node_i].downstream
        if index is None:
            for d in downstream:
                self.blockers[d] += 1
        elif self.view.unfinished_children.get(node_i, 0) == 1:
            # the map's first child to run again: the map is incomplete again, for the
            # tasks that need it complete (its release counts them when it completes)
            for d in downstream:
                if self.needs_complete[d].get(node_i):
                    self.blockers[d] += 1

    def _release(self, node_i: int, *, complete: bool) -> None:
        """``node_i`` became finished (or complete): queue the tasks that now may run."""
        blockers = self.blockers
        if not blockers:
            return
        for d in self.graph.nodes[node_i].downstream:
            if self.needs_complete[d][node_i] is complete:
                blockers[d] -= 1
                if blockers[d] == 0:
                    self.candidates[(d, None)] = None
                    # a mapped task already expanded waited on an upstream that ran again
                    # (an invalid cache): its unfinished children are decided anew
                    for j, child in enumerate(self.view.children.get(d, ())):
                        if not child.state.is_finished():
                            self.candidates[(d, j)] = None
