"""Attempt bars: each run of a task body, with the times measured where it ran.

A read model over the fold (``view.timeline()``), shared by ``show``, the timelines and
exports. An attempt opens with its task's ``Running`` event (written when the body was
handed out) and closes with the event that ends it, which carries ``started_at`` and
``ended_at`` as the worker measured them around the body; a bar uses those, so it is
true to the body's own clock however attempts were batched. An attempt a crashed driver
left open ends when that driver was last known alive (``ended_at`` of the interrupted
event); one the log leaves open has no end. Attempts are numbered per task or mapped
child across driver sessions: an interrupted attempt and the one that replaces it are
#1 and #2, though both are the same retry (``run_count``) to Prefect 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statecore.fold import RunView, TaskRun, TimelineEntry

__all__ = ["AttemptBar", "Failure", "attempt_bars", "bars_of", "failures", "traceback_of"]


@dataclass(frozen=True, slots=True)
class AttemptBar:
    """One attempt of a task body.

    Attributes:
        task: the task's key.
        index: the mapped child's index, None for a task.
        number: 1, 2, ... per task or child, across driver sessions.
        run_count: Prefect 1's ``task_run_count`` of the attempt (retries count, an
            interrupted attempt does not).
        start: UTC ns the body started (measured where it ran; the Running event's time
            when the log has no measure, e.g. an attempt a crash cut short).
        end: UTC ns the body ended, or its driver was last known alive; None if open.
        state: the state the attempt ended in (``Success``, ``Failed``, ``Retrying``,
            ``Looped``, ``Pending`` for an interrupted one, ...), ``Running`` if open.
        message: that state's message.
        measured: True when ``start`` and ``end`` are the body's own measure.
        loops: LOOP iterations the attempt went through (one bar for all of them).
    """

    task: str
    index: int | None
    number: int
    run_count: int
    start: int
    end: int | None
    state: str
    message: str | None
    measured: bool
    loops: int = 0

    @property
    def label(self) -> str:
        """``key`` or ``key[i]``."""
        return self.task if self.index is None else f"{self.task}[{self.index}]"

    @property
    def duration(self) -> int | None:
        """Nanoseconds from start to end, None while open."""
        return None if self.end is None else max(self.end - self.start, 0)

    @property
    def interrupted(self) -> bool:
        """True for an attempt that a crash, Ctrl-C or SIGTERM cut short."""
        return self.state == "Pending" and (self.message or "").startswith("Interrupted")


def bars_of(entries: list[TimelineEntry]) -> list[AttemptBar]:
    """The attempts that timeline entries describe, in the order they opened."""
    # per open attempt: its slot in ``out``, its Running entry, its first measured
    # start (a LOOP's iterations are one attempt) and its loop count
    open_at: dict[tuple[str, int | None], tuple[int, TimelineEntry, int | None, int]] = {}
    numbers: dict[tuple[str, int | None], int] = {}
    out: list[AttemptBar] = []
    for entry in entries:
        if entry.task is None:
            continue
        entity = (entry.task, entry.index)
        opened = open_at.get(entity)
        if opened is not None and entry.new != "Running":
            slot, running, first, loops = opened
            if first is None:
                first = entry.started_at
            if entry.new == "Looped":
                open_at[entity] = (slot, running, first, loops + 1)
                continue
            del open_at[entity]
            start = first if first is not None else running.ts
            end = entry.ended_at if entry.ended_at is not None else entry.ts
            out[slot] = AttemptBar(
                entry.task,
                entry.index,
                numbers[entity],
                running.attempt,
                start,
                max(end, start),
                entry.new,
                entry.message,
                first is not None and entry.ended_at is not None,
                loops,
            )
        elif entry.new == "Running" and opened is None:
            numbers[entity] = numbers.get(entity, 0) + 1
            open_at[entity] = (len(out), entry, None, 0)
            out.append(
                AttemptBar(
                    entry.task,
                    entry.index,
                    numbers[entity],
                    entry.attempt,
                    entry.ts,
                    None,
                    "Running",
                    entry.message,
                    False,
                )
            )
    return out


def attempt_bars(view: RunView) -> list[AttemptBar]:
    """Every attempt of every task body in the run, in the order they opened."""
    return bars_of(view.timeline())


# -- failures and their tracebacks (``show --errors``, ``logs --errors``, the ui) --------


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed task or mapped child as the log left it.

    Attributes:
        task: the task's key.
        index: the mapped child's index, None for a task.
        name: the task's name (``name[i]`` for a child).
        state: the state's class name (``Failed``, ``TimedOut``, ``TriggerFailed``, ...).
        message: the state's message.
        attempt: the attempt the state ended.
        traceback: the stored traceback of the error, None when the log holds none (a
            trigger that failed, a mapped task whose children failed).
    """

    task: str
    index: int | None
    name: str
    state: str
    message: str | None
    attempt: int
    traceback: str | None


def traceback_of(result: Any) -> str | None:
    """The full traceback of a state's result when it is an error, else None.

    An error read back from the log carries its original traceback as
    ``traceback_text``; a live one is formatted from its frames.
    """
    if isinstance(result, BaseException):
        text = getattr(result, "traceback_text", "")
        if text:
            return str(text)
        import traceback

        return "".join(traceback.format_exception(type(result), result, result.__traceback__))
    return None


def failures(view: RunView) -> list[Failure]:
    """Every task and mapped child whose state is failed, in graph order (a task, then
    its children)."""
    names = {t["key"]: t.get("name", t["key"]) for t in view.graph.get("tasks", [])}
    out: list[Failure] = []
    for node, key in enumerate(view.keys):
        name = str(names.get(key, key))
        run = view.runs[node]
        entities: list[tuple[int | None, str, TaskRun]] = [(None, name, run)]
        entities += [(i, f"{name}[{i}]", kid) for i, kid in enumerate(view.children.get(node, []))]
        for index, label, entity in entities:
            state = entity.state
            if state.is_failed():
                out.append(
                    Failure(
                        key,
                        index,
                        label,
                        state.name,
                        state.message,
                        entity.attempt,
                        traceback_of(state.result),
                    )
                )
    return out
