"""The fold: a run's events folded into a :class:`RunView`.

Replay, audit, resume and the flow-state rule all read this one view; nothing else
rebuilds state. The runner applies each event it appends to its live view through the
same :meth:`RunView.apply_state`, so ``fold(log)`` equals what the run returned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from operator import attrgetter, itemgetter
from secrets import token_bytes
from typing import Any

from statecore import machine
from statecore.codec import PLAIN_BY_NAME, build_state
from statecore.errors import CorruptEvent, IllegalTransition, UnknownState
from statecore.events import (
    KIND_STATE,
    MAX_MAP_STATES,
    SCHEMA_VERSION,
    EventRow,
    LogRecord,
    Note,
    RunStarted,
    StateChanged,
    StoredEvent,
    decode_payload,
)
from statecore.serialization import take_opened, unpackb
from statecore.states import (
    NOT_PERSISTED,
    STATE_CLASSES,
    Finished,
    Looped,
    Mapped,
    Pending,
    Running,
    State,
)

__all__ = [
    "RunView",
    "TaskRun",
    "TaskStates",
    "TimelineEntry",
    "fold",
    "fold_rows",
    "state_from_change",
]

NOT_RUN = "Task not run."
# a plain dict: the fold looks a transition up per event, and a mappingproxy is slower
_TASK_TABLE: dict[str, frozenset[str]] = dict(machine.TASK_TRANSITIONS)
_ROW: Callable[[StoredEvent], EventRow] = attrgetter("seq", "kind", "ts", "payload")
_CHANGE_FIELDS = (
    "task",
    "index",
    "prev",
    "new",
    "attempt",
    "message",
    "result",
    "result_stored",
    "extra",
)


# rows decoded per msgpack call: enough to make the call's cost per row small, few enough
# that a chunk's decoded objects stay in the CPU's cache while the loop reads them (256
# rows replay faster than 4,096 did: benchmarks/fold_chunk.py)
_CHUNK = 256
# Between two payloads of a chunk: an 8-byte msgpack bin. Each must decode back where it
# was put, a check that every payload decoded to exactly one object, no more, no less.
# The mark is drawn afresh in each process: a log's author cannot know it, so no pair of
# payloads can be crafted to swallow one separator and supply another in its place (only
# then could a chunk decode while its rows, decoded one by one, do not).
_MARK = token_bytes(8)
_SEPARATOR = b"\xc4\x08" + _MARK
_PAYLOAD: Callable[[EventRow], bytes] = itemgetter(3)


def _decode_chunk(chunk: list[EventRow]) -> list[Any]:
    """Each row's payload decoded, in one msgpack call for the whole chunk (a call per
    payload costs a third of a replay's decoding); ``None`` for a payload that does not
    decode, whose row the fold then reports as corrupt."""
    n = len(chunk)
    stream = b"\xdd" + (2 * n - 1).to_bytes(4, "big") + _SEPARATOR.join(map(_PAYLOAD, chunk))
    take_opened()
    try:
        decoded: list[Any] = unpackb(stream)
    except Exception:
        decoded = []  # some payload is bad: decode row by row to find it
    if take_opened():
        # sealed values were decrypted: each must name the event it sits in, which
        # decode_payload checks row by row (only an encrypted log pays for it)
        return [None] * n
    if decoded[1::2].count(_MARK) == n - 1 and len(decoded) == 2 * n - 1:
        return decoded[::2]
    return [_decode_or_none(row[3]) for row in chunk]


def _decode_or_none(payload: bytes) -> Any:
    try:
        return unpackb(payload)
    except Exception:
        return None


class TaskRun:
    """What the log says of one task or mapped child."""

    __slots__ = ("attempt", "ended", "interrupted", "loop_count", "loop_result", "started", "state")

    def __init__(self) -> None:
        self.state: State = Pending(NOT_RUN)
        self.attempt = 0
        self.loop_count = 0
        self.loop_result: Any = None
        self.started: int | None = None
        self.ended: int | None = None
        self.interrupted = False


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One state change, for audit and timelines (``view.timeline()``)."""

    seq: int
    ts: int
    task: str | None
    index: int | None
    prev: str
    new: str
    attempt: int
    message: str | None
    #: when the attempt's body started and ended (UTC ns), measured where it ran, for
    #: the events that end an attempt; None where the event carries no measure
    started_at: int | None = None
    ended_at: int | None = None


def state_from_change(change: StateChanged) -> State:
    """Rebuild the State a :class:`StateChanged` event records."""
    result = change.result if change.result_stored else NOT_PERSISTED
    return build_state(change.new, change.message, result, change.extra)


# The replay loop makes a mapped child's TaskRun by setting its slots itself (a class call
# costs a third more in CPython 3.11; plain States likewise, in codec.make_plain). That is
# only sound while the slots and __init__ are the ones below (tests/core/test_fold.py checks).
_STATE_SLOTS = ("message", "result", "run_id")
_TASK_RUN_SLOTS = (
    "attempt",
    "ended",
    "interrupted",
    "loop_count",
    "loop_result",
    "started",
    "state",
)
_new = object.__new__
_ENDS = frozenset(cls for cls in STATE_CLASSES.values() if issubclass(cls, Finished)) - {Looped}
_END_NAMES = frozenset(cls.__name__ for cls in _ENDS)


class RunView:
    """Everything the log says of one run.

    Attributes:
        run_id: the run.
        flow_name: the flow's name.
        graph: the graph recorded in the first event (keys, edges, fingerprint, ...).
        parameters: the run's parameters (secrets removed).
        keys: task keys in graph order.
        runs: one :class:`TaskRun` per task.
        children: mapped task index -> its children's TaskRuns.
        flow_state: the flow's state.
        head: the last sequence number folded.
        problems: transitions outside the machine's table (fold flags, never hides them).
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.flow_name = ""
        self.graph: dict[str, Any] = {}
        self.parameters: dict[str, Any] = {}
        self.parent_run: str | None = None
        self.keys: list[str] = []
        self.by_key: dict[str, int] = {}
        self.runs: list[TaskRun] = []
        self.children: dict[int, list[TaskRun]] = {}
        self.unfinished_children: dict[int, int] = {}
        self.flow_state: State = Pending()
        self.head = 0
        self.last_event: StoredEvent | None = None
        self.started: int | None = None
        self.ended: int | None = None
        self._entries: list[tuple[Any, ...]] = []
        self.logs: list[tuple[int, LogRecord]] = []
        self.notes: list[tuple[int, Note]] = []
        self.problems: list[str] = []
        #: keep timeline entries as events are folded (fold() and the live runner do not:
        #: a folded view derives its timeline when asked, reading its events again)
        self.track = True
        #: with ``track``, keep the mapped children's entries too (False: only the
        #: tasks' and the flow's, for a page that draws children on demand; such a view's
        #: :meth:`timeline` still gives every entry, read again)
        self.track_children = True
        #: a replayed view's way to read its events again, for timeline()
        self._source: Callable[[], Iterable[EventRow]] | None = None
        self._folding = False
        self._unmade = 0  # mapped children left unmade while folding (see apply_rows)

    # -- folding ------------------------------------------------------------------------

    def regraph(self, graph: dict[str, Any]) -> None:
        """Realign the run's tasks, by key, to a changed graph (a resume with
        ``allow_changed``): kept tasks keep their history, new ones start Pending."""
        runs = dict(zip(self.keys, self.runs, strict=True))
        kids = {self.keys[i]: c for i, c in self.children.items()}
        open_kids = {self.keys[i]: n for i, n in self.unfinished_children.items()}
        self.graph = graph
        self.keys = [t["key"] for t in graph.get("tasks", [])]
        self.by_key = {k: i for i, k in enumerate(self.keys)}
        self.runs = [runs.get(k) or TaskRun() for k in self.keys]
        self.children = {i: kids[k] for i, k in enumerate(self.keys) if k in kids}
        self.unfinished_children = {
            i: open_kids[k] for i, k in enumerate(self.keys) if k in open_kids
        }

    def start(self, body: RunStarted, ts: int) -> None:
        """Fold the run's first event."""
        self.flow_name = body.flow_name
        self.graph = body.graph
        self.parameters = dict(body.parameters)
        self.parent_run = body.parent_run
        self.keys = [t["key"] for t in body.graph.get("tasks", [])]
        self.by_key = {k: i for i, k in enumerate(self.keys)}
        self.runs = [TaskRun() for _ in self.keys]
        self.started = ts

    def apply_state(
        self,
        node: int | None,
        index: int | None,
        state: State,
        attempt: int,
        ts: int,
        seq: int = 0,
        prev: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Fold one state change (from the log, or from the live runner).

        ``prev`` is the previous state the event names; when given (a log), the change
        is checked against the view and the machine's table, and problems are flagged.
        ``extra`` is the event's extra fields (only its measured times are read, for
        the timeline).
        """
        kind = type(state)
        new = kind.__name__
        if node is None:
            old = type(self.flow_state).__name__
            if prev is not None and not machine.is_legal(old, new, flow=True):
                self._flag(IllegalTransition(self.run_id, None, old, new))
            self.flow_state = state
            if kind in _ENDS:
                self.ended = ts
            if self.track:
                self._entries.append((seq, ts, None, None, old, new, attempt, state.message, None))
            return
        run = self.runs[node] if index is None else self.children[node][index]
        old = type(run.state).__name__
        if prev is not None:
            if prev != old:
                self.problems.append(
                    f"event {seq}: task {self._label(node, index)} was {old}, event says {prev}"
                )
            if new not in _TASK_TABLE.get(old, ()):
                self._flag(IllegalTransition(self.run_id, self._label(node, index), old, new))
        was_finished = type(run.state) in _ENDS
        run.state = state
        if index is not None and was_finished and kind not in _ENDS:
            # a finished child opened again (Prefect 1 re-visits a Cached state on a
            # later pass): its map counts as unfinished until it ends again
            self.unfinished_children[node] += 1
        if kind is Running:
            if run.started is None:
                run.started = ts
            run.attempt = attempt
            run.interrupted = False
        elif kind in _ENDS:
            run.ended = ts
            if index is not None:
                if not was_finished:
                    self.unfinished_children[node] -= 1
            elif kind is Mapped:
                n = state.n_map_states  # type: ignore[attr-defined]
                if type(n) is not int or not 0 <= n <= MAX_MAP_STATES:
                    # a hostile count: never allocate a TaskRun per declared child
                    raise CorruptEvent(
                        f"run {self.run_id!r}, event {seq}: a Mapped state declaring "
                        f"{n!r:.40} children (at most {MAX_MAP_STATES:,})"
                    )
                # while folding a log, a child's TaskRun is made by its first event
                kids: list[TaskRun | None]
                if self._folding:
                    kids = [None] * n
                    self._unmade += n
                else:
                    kids = [TaskRun() for _ in range(n)]
                self.children[node] = kids  # type: ignore[assignment]
                self.unfinished_children[node] = n
        elif kind is Looped:
            run.loop_count = state.loop_count  # type: ignore[attr-defined]
            run.loop_result = state.result
        elif kind is Pending and old in ("Running", "Looped"):
            run.interrupted = True
        if self.track and (index is None or self.track_children):
            self._entries.append((seq, ts, node, index, old, new, attempt, state.message, extra))

    def _label(self, node: int, index: int | None) -> str:
        key = self.keys[node] if node < len(self.keys) else str(node)
        return key if index is None else f"{key}[{index}]"

    def _flag(self, exc: Exception) -> None:
        self.problems.append(str(exc))

    def apply(self, event: StoredEvent) -> None:
        """Fold one stored event."""
        self.apply_many((event,))

    def apply_many(self, events: Sequence[StoredEvent]) -> None:
        """Fold stored events in order.

        Raises:
            CorruptEvent: a gap, an undecodable event, an unknown task or state name.
        """
        if not events:
            return
        self._source = None
        self.apply_rows(map(_ROW, events))
        self.last_event = events[-1]

    def apply_rows(self, rows: Iterable[EventRow]) -> None:
        """Fold events given as ``(seq, kind, ts, payload)`` rows, in order: the replay
        loop, kept tight because audits and resumes fold big logs. It does not set
        :attr:`last_event` (a row lacks the envelope's hash); the caller does.

        These savings make it cheap, none of them visible in the view it leaves
        (README, "Speed", has their measure):

        * rows are taken a chunk at a time, and a chunk's payloads decoded in one msgpack
          call (:func:`_decode_chunk`); a chunk that does not decode cleanly is decoded
          row by row, so a bad event is named exactly as before;
        * a mapped child's :class:`TaskRun` is made by its first event, not when its
          parent maps (the children the log never reaches are made at the end);
        * a plain ``Running`` state, soon replaced in most logs, is shared among the
          tasks that start with the same message while folding; whatever is still
          Running at the end gets a State of its own (:meth:`_end_fold`);
        * the task an event names is looked up once per run of events naming it, and
          plain States and a child's TaskRun are made by setting their slots (see
          :func:`~statecore.codec.make_plain`, whose work the loop does inline);
        * a legal start, and a legal end of a mapped child, are applied here; every
          other change goes through :meth:`apply_state`.

        Raises:
            CorruptEvent: a gap, an undecodable event, an unknown task or state name.
        """
        plain = PLAIN_BY_NAME
        by_key = self.by_key
        runs = self.runs
        children = self.children
        unfinished = self.unfinished_children
        apply_state = self.apply_state
        table = _TASK_TABLE
        from_pending = table["Pending"]
        ends = _ENDS
        running = Running
        new_object = _new
        task_run = TaskRun
        state_kind = KIND_STATE
        version = SCHEMA_VERSION
        # without a timeline to keep, the two commonest changes take a short cut below
        # (a mapped child's too when only the tasks' entries are kept)
        short_cut = not self.track
        child_short_cut = short_cut or not self.track_children
        ended_names = _END_NAMES
        shared: dict[Any, State] = {}
        held: list[TaskRun] = []  # the TaskRuns given a shared state, for _end_fold
        last_message: str | None = None  # the last shared Running's message, and it
        last_running: State = Running()
        hold = held.append
        made = 0  # mapped children made by their first event
        # the task the last state event named, its index and its children (if mapped)
        last_task: Any = None
        node = 0
        kids: Any = None  # list[TaskRun | None] while folding, or None (not mapped)
        run_id = self.run_id
        head = self.head
        rows = iter(rows)
        self._folding = True
        try:
            while chunk := list(islice(rows, _CHUNK)):
                for (seq, kind, ts, payload), items in zip(
                    chunk, _decode_chunk(chunk), strict=True
                ):
                    if seq - head != 1:  # (a difference of 1 is a cached int: no allocation)
                        raise CorruptEvent(
                            f"run {run_id!r}: event {seq} follows {head}; the log has a gap"
                        )
                    if kind != state_kind:
                        self._apply_other(seq, kind, ts, payload)
                        head = seq
                        last_task = None  # the task index may have changed
                        # a run or graph-changed event may have replaced the task index
                        by_key = self.by_key
                        runs = self.runs
                        children = self.children
                        unfinished = self.unfinished_children
                        continue
                    try:
                        v, task, index, prev, new, attempt, message, result, stored, extra = items
                    except (TypeError, ValueError):
                        v = None
                    if (
                        v != version
                        or type(items) is not list
                        or type(new) is not str
                        or type(prev) is not str
                        or type(attempt) is not int
                        or (message is not None and type(message) is not str)
                        or (extra is not None and type(extra) is not dict)
                        or type(stored) is not bool
                    ):
                        # undecodable, or not the current layout: decode_payload names
                        # the problem (or reads an older layout)
                        change = decode_payload(run_id, seq, kind, payload)
                        assert isinstance(change, StateChanged)
                        _, task, index, prev, new, attempt, message, result, stored, extra = (
                            version,
                            *(getattr(change, f) for f in _CHANGE_FIELDS),
                        )
                    cls = plain.get(new)
                    fresh = True
                    if (
                        cls is running
                        and (short_cut if index is None else child_short_cut)
                        and stored
                        and result is None
                        and type(message) is str
                    ):
                        fresh = False
                        if message == last_message:  # most start with the same message
                            state = last_running
                        else:
                            state = shared.get(message) or running(message)
                            shared[message] = last_running = state
                            last_message = message
                    elif cls is not None:
                        # make_plain(cls, message, result), without its call
                        state = new_object(cls)
                        state.message = message
                        state.result = result if stored else NOT_PERSISTED
                        state.run_id = None
                    else:
                        try:
                            state = build_state(
                                new, message, result if stored else NOT_PERSISTED, extra
                            )
                        except UnknownState as exc:
                            raise CorruptEvent(f"run {run_id!r}, event {seq}: {exc}") from None
                    if task is None:
                        state = state if fresh else running(message)
                        apply_state(None, None, state, attempt, ts, seq, prev)
                        head = seq
                        continue
                    if task != last_task:  # a map's events name one task over and over
                        try:
                            node = by_key[task]
                        except (KeyError, TypeError):
                            raise CorruptEvent(
                                f"run {run_id!r}, event {seq}: unknown task {task!r}"
                            ) from None
                        kids = children.get(node)
                        last_task = task
                    if index is None:
                        run = runs[node]
                    else:
                        try:
                            if index < 0:
                                raise IndexError(index)
                            run = kids[index]
                        except (IndexError, TypeError):
                            raise CorruptEvent(
                                f"run {run_id!r}, event {seq}: {task}[{index}]"
                                " is not a child of a mapped task"
                            ) from None
                        if run is None:
                            # the child's first event: until now it was Pending, not run
                            if (
                                cls is running
                                and child_short_cut
                                and prev == "Pending"
                                and new in from_pending
                            ):
                                # a TaskRun, made without the class call, that starts Running
                                kids[index] = run = new_object(task_run)
                                run.state = state
                                run.attempt = attempt
                                run.loop_count = 0
                                run.loop_result = None
                                run.started = ts
                                run.ended = None
                                run.interrupted = False
                                hold(run)
                                made += 1
                                head = seq
                                continue
                            run = kids[index] = TaskRun()
                            made += 1
                    # A task starting and a mapped child finishing are most of a log: when
                    # legal, they are applied here exactly as apply_state applies them (the
                    # property tests check fold == run), saving its call; all else goes
                    # there.
                    if (
                        (short_cut if index is None else child_short_cut)
                        and prev == (old := type(run.state).__name__)
                        and new in table.get(old, ())
                    ):
                        if cls is running:
                            run.state = state
                            hold(run)
                            if run.started is None:
                                run.started = ts
                            run.attempt = attempt
                            run.interrupted = False
                            head = seq
                            continue
                        if index is not None and cls in ends and old not in ended_names:
                            run.state = state
                            run.ended = ts
                            unfinished[node] -= 1
                            head = seq
                            continue
                    state = state if fresh else running(message)
                    apply_state(node, index, state, attempt, ts, seq, prev, extra)
                    head = seq
                    last_task = None  # a Mapped state makes the task's children anew
        finally:
            self.head = head
            self._folding = False
            self._end_fold(shared, held, self._unmade > made)
            self._unmade = 0

    def _end_fold(self, shared: dict[Any, State], held: list[TaskRun], unmade: bool) -> None:
        """Leave the view as :meth:`apply_state` would have: every mapped child the log
        never reached gets a Pending TaskRun of its own, and every TaskRun still holding
        a Running state shared while folding gets a Running of its own."""
        if unmade:
            for kids in self.children.values():
                if None in kids:
                    kids[:] = [TaskRun() if kid is None else kid for kid in kids]
        if held:
            # a Running hashes by identity (object.__hash__): this finds the very objects
            mine = set(shared.values())
            for run in held:
                if type(run.state) is Running and run.state in mine:
                    run.state = Running(run.state.message)

    def _apply_other(self, seq: int, kind: str, ts: int, payload: bytes) -> None:
        body = decode_payload(self.run_id, seq, kind, payload)
        if isinstance(body, RunStarted):
            if seq != 1:
                raise CorruptEvent(f"run {self.run_id!r}: a second run event at {seq}")
            self.start(body, ts)
        elif isinstance(body, LogRecord):
            self.logs.append((ts, body))
        elif isinstance(body, Note):
            self.notes.append((ts, body))
            if body.code == "graph-changed" and body.data and "graph" in body.data:
                self.regraph(body.data["graph"])

    def settle_flow_result(self) -> None:
        """Give a folded flow state the result ``flow.run`` gives it: every task's state
        (the log records the flow's result as None; it is a view of the tasks')."""
        if self.flow_state.result is None:
            self.flow_state.result = self.task_states

    def advance(self, event: StoredEvent) -> None:
        """Record that ``event`` (already folded through :meth:`apply_state`) is the head."""
        self.head = event.seq
        self.last_event = event
        self._source = None

    # -- reading ------------------------------------------------------------------------

    def state_of(self, node: int) -> State:
        """A task's state; a mapped task's Mapped state carries its children's states."""
        state = self.runs[node].state
        if isinstance(state, Mapped) and node in self.children:
            children = [c.state for c in self.children[node]]
            return Mapped(state.message, None, children, n_map_states=len(children))
        return state

    @property
    def task_states(self) -> TaskStates:
        """Every task's state, looked up by key or unique name."""
        return TaskStates(self)

    def timeline(self) -> list[TimelineEntry]:
        """Every state change in log order (data, not drawing)."""
        if (not self.track or not self.track_children) and self._source is not None:
            # a replayed view: fold its events again, this time keeping the timeline
            shadow = RunView(self.run_id)
            shadow.apply_rows(islice(self._source(), self.head))
            if shadow.head != self.head:
                raise CorruptEvent(
                    f"run {self.run_id!r}: the log has {shadow.head} events now, "
                    f"{self.head} when it was replayed (pruned since?)"
                )
            return shadow.timeline()
        keys = self.keys
        return [
            TimelineEntry(
                seq,
                ts,
                None if n is None else keys[n],
                i,
                old,
                new,
                attempt,
                message,
                *_measured(extra),
            )
            for seq, ts, n, i, old, new, attempt, message, extra in self._entries
        ]

    def kept_timeline(self) -> list[TimelineEntry]:
        """The entries this view kept while folding (with ``track_children`` False, the
        tasks' and the flow's only), without reading the log again."""
        keys = self.keys
        return [
            TimelineEntry(
                seq,
                ts,
                None if n is None else keys[n],
                i,
                old,
                new,
                attempt,
                message,
                *_measured(extra),
            )
            for seq, ts, n, i, old, new, attempt, message, extra in self._entries
        ]

    @property
    def entries(self) -> list[TimelineEntry]:
        """Every state change in log order (the same as :meth:`timeline`)."""
        return self.timeline()

    def finished(self) -> bool:
        """True when the flow's state is finished."""
        return self.flow_state.is_finished()


def _measured(extra: Any) -> tuple[int | None, int | None]:
    if not isinstance(extra, dict):
        return None, None
    started, ended = extra.get("started_at"), extra.get("ended_at")
    return (
        started if type(started) is int else None,
        ended if type(ended) is int else None,
    )


def resolve_task_ref(
    ref: Any,
    by_key: Mapping[str, int],
    index_of: Mapping[Any, int] | None,
    names: Mapping[str, list[int]],
) -> int:
    """Resolve a handle, key or unique name to a node index (see :meth:`Graph.node_for`).

    A task handle is known by its ``_key`` slot, so the fold needs no authoring import.
    """
    if not isinstance(ref, str) and hasattr(ref, "_key"):
        if index_of is not None and ref in index_of:
            return index_of[ref]
        key = getattr(ref, "_key", None)
        if index_of is None and key is not None and key in by_key:
            return by_key[key]
        raise KeyError(f"task {ref!r} is not in this flow")
    if isinstance(ref, str):
        if ref in by_key:
            return by_key[ref]
        found = names.get(ref)
        if found and len(found) == 1:
            return found[0]
        if found:
            keys = ", ".join(k for k, i in by_key.items() if i in found)
            raise KeyError(f"task name {ref!r} is ambiguous; use one of the keys: {keys}")
    raise KeyError(f"no task {ref!r} in this flow")


class TaskStates(Mapping[Any, State]):
    """Task states by handle, key, or a name unique in the flow."""

    def __init__(self, view: RunView, index_of: Mapping[Any, int] | None = None) -> None:
        self._view = view
        self._index_of = index_of
        self._names: dict[str, list[int]] | None = None
        self._graph: Any = None

    def _resolve(self, ref: Any) -> int:
        graph = self._view.graph
        if self._names is None or self._graph is not graph:  # a resume may regraph
            names: dict[str, list[int]] = {}
            for i, t in enumerate(graph.get("tasks", [])):
                names.setdefault(t["name"], []).append(i)
            self._names, self._graph = names, graph
        return resolve_task_ref(ref, self._view.by_key, self._index_of, self._names)

    def __getitem__(self, ref: Any) -> State:
        return self._view.state_of(self._resolve(ref))

    def __iter__(self) -> Iterator[str]:
        return iter(self._view.keys)

    def __len__(self) -> int:
        return len(self._view.keys)

    def __contains__(self, ref: object) -> bool:
        try:
            self._resolve(ref)
        except KeyError:
            return False
        return True

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: {self[k]!r}" for k in self) + "}"


def fold(events: Iterable[StoredEvent], *, run_id: str | None = None) -> RunView:
    """Fold events into a :class:`RunView` (pure: no I/O, no clock).

    Raises:
        CorruptEvent: an undecodable event, a gap, or an event naming an unknown task.
    """
    events = list(events)
    view = RunView(run_id or (events[0].run_id if events else ""))
    # audits rarely ask for the timeline of a big log: derive it on demand
    view.track = False
    view.apply_many(events)
    view._source = lambda: map(_ROW, events)
    view.settle_flow_result()
    return view


def fold_rows(
    rows: Iterable[EventRow],
    *,
    run_id: str,
    again: Callable[[], Iterable[EventRow]],
    task_timeline: bool = False,
) -> RunView:
    """Fold ``(seq, kind, ts, payload)`` rows into a :class:`RunView`, keeping none of
    them: replay from a store, whose rows are its cheapest read (``Store.scan``).

    ``again`` reads the rows anew; :meth:`RunView.timeline` uses it, since the view keeps
    no events (``task_timeline`` keeps the tasks' entries: :meth:`RunView.kept_timeline`).
    The view's :attr:`~RunView.last_event` is left for the caller to set.

    Raises:
        CorruptEvent: an undecodable event, a gap, or an event naming an unknown task.
    """
    view = RunView(run_id)
    # task_timeline: keep the tasks' and the flow's entries (not the children's) as the
    # rows go by, for a page that draws mapped children on demand
    view.track = task_timeline
    view.track_children = False
    view.apply_rows(rows)
    view._source = again
    view.settle_flow_result()
    return view
