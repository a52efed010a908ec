"""The JSON the page reads, built from the store's index and replayed views only.

Nothing here is a second source of truth: a run's document is ``replay(store, run_id,
until=...)`` read through :mod:`statecore.attempts`, :mod:`statecore.sessions` and
:mod:`statecore.audit`. Attempts are sent as compact rows (lists, not objects) so a
100,000-child run's document stays a few megabytes.
"""

from __future__ import annotations

import re
import statistics
import threading
import weakref
from typing import Any

from statecore.attempts import AttemptBar, attempt_bars, bars_of, traceback_of
from statecore.audit import json_safe, log_lines
from statecore.backends.base import RunMeta, Store
from statecore.errors import CorruptEvent, RunNotFound
from statecore.events import RunStarted, decode_body
from statecore.fold import RunView, TimelineEntry
from statecore.runners.local import replay, replay_with_task_timeline
from statecore.sessions import sessions

__all__ = [
    "ATTEMPT_FIELDS",
    "LAZY_CHILDREN",
    "children_attempts",
    "history",
    "run_document",
    "run_row",
    "runs_page",
    "task_details",
    "trigger_of",
]

#: The order of the fields of one attempt row in a run document (``start`` and ``end``
#: are ns after the run's ``started``).
ATTEMPT_FIELDS = ["task", "index", "number", "start", "end", "state", "message", "measured"]

_SLOT = re.compile(r"@\d{4}-\d{2}-\d{2}T")
_PREVIEW = 200


def trigger_of(run_id: str, flow_name: str, parent_run: str | None) -> str:
    """``slot`` for a scheduler's run (``flow@time`` ids), ``rerun`` or ``ad hoc``."""
    if parent_run:
        return "rerun"
    if run_id.startswith(flow_name + "@") and _SLOT.search(run_id, len(flow_name)):
        return "slot"
    return "ad hoc"


def _first_body(store: Store, run_id: str) -> RunStarted | None:
    try:
        first = store.read(run_id, limit=1)
        body = decode_body(first[0]) if first else None
    except CorruptEvent:
        return None
    return body if isinstance(body, RunStarted) else None


def run_row(store: Store, meta: RunMeta) -> dict[str, Any]:
    """One line of the runs list: the index's fields and the first event's parameters."""
    body = _first_body(store, meta.run_id)
    return {
        "run_id": meta.run_id,
        "flow": meta.flow_name,
        "state": meta.state,
        "started": meta.started,
        "ended": meta.ended,
        "duration": None if meta.ended is None else meta.ended - meta.started,
        "head": meta.head,
        "parent_run": meta.parent_run,
        "parameters": json_safe(body.parameters) if body is not None else None,
        "trigger": trigger_of(meta.run_id, meta.flow_name, meta.parent_run),
    }


def runs_page(
    store: Store,
    *,
    flow: str | None = None,
    state: str | None = None,
    since: int | None = None,
    until: int | None = None,
    query: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    """A page of runs, newest first; ``before`` (a start time, ns) pages backwards.

    The store filters by flow, state and start time; ``query`` (a substring of the run id
    or flow name) is applied to what it returns, so a search reads at most the runs in
    the time window.
    """
    upper = until if before is None else (before - 1 if until is None else min(until, before - 1))
    ask = None if query else limit + 1
    metas = store.list_runs(flow_name=flow, state=state, since=since, until=upper, limit=ask)
    if query:
        q = query.lower()
        metas = [m for m in metas if q in m.run_id.lower() or q in m.flow_name.lower()]
    more = len(metas) > limit
    metas = metas[:limit]
    return {
        "runs": [run_row(store, m) for m in metas],
        "next_before": metas[-1].started if more and metas else None,
    }


def _first_bad_seq(store: Store, run_id: str, head: int) -> int:
    """The first sequence number whose event the fold refuses (binary search on replay)."""
    good, bad = 0, head
    while bad - good > 1:
        mid = (good + bad) // 2
        try:
            replay(store, run_id, until=mid)
            good = mid
        except CorruptEvent:
            bad = mid
    return bad


def load_view(
    store: Store, run_id: str, until: int | None
) -> tuple[RunView, dict[str, Any] | None]:
    """The run as of ``until`` (None: its head), and what is damaged in its log if any.

    A log the fold refuses is shown as far as it is intact: the view stops just before
    the first bad event, which the second value names.

    Raises:
        RunNotFound: no such run, or nothing intact before the damage.
    """
    try:
        return replay_with_task_timeline(store, run_id, until=until), None
    except CorruptEvent as exc:
        head = store.head(run_id) if until is None else min(until, store.head(run_id))
        bad = _first_bad_seq(store, run_id, head)
        damage = {"first_bad_seq": bad, "error": str(exc)}
        if bad <= 1:
            raise RunNotFound(f"run {run_id!r}: its first event is damaged ({exc})") from exc
        return replay_with_task_timeline(store, run_id, until=bad - 1), damage


class _LastTimeline:
    """The timeline and attempt bars of the view read last.

    A replayed view folds its whole log again for each ``timeline()`` (2-3 s for a
    100,000-task run); the page asks for the run's document, then for one task's details
    after another, all of the same cached view. One view's worth is kept (weakly: it
    goes with the view), so the memory stays that of one run.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.view: weakref.ref[RunView] | None = None
        self.head = -1
        self.entries: list[TimelineEntry] = []
        self.bars: list[AttemptBar] = []

    def get(self, view: RunView) -> tuple[list[TimelineEntry], list[AttemptBar]]:
        with self.lock:
            if self.view is not None and self.view() is view and self.head == view.head:
                return self.entries, self.bars
        entries = view.timeline()
        bars = bars_of(entries)
        with self.lock:
            self.view, self.head = weakref.ref(view), view.head
            self.entries, self.bars = entries, bars
        return entries, bars


_last = _LastTimeline()


def _state_code(codes: dict[str, int], names: list[str], state: str) -> int:
    code = codes.get(state)
    if code is None:
        code = codes[state] = len(names)
        names.append(state)
    return code


#: a run with more mapped children than this sends its children's attempts on demand
#: (``children_attempts``), not in its document: a 100,000-child map's page then draws
#: from one fold with the tasks' entries, the children's bars come when a map is opened
LAZY_CHILDREN = 5_000


def _attempt_rows(
    bars: list[AttemptBar],
    order: dict[str, int],
    base: int,
    codes: dict[str, int],
    state_names: list[str],
) -> list[list[Any]]:
    return [
        [
            order.get(bar.task, -1),
            -1 if bar.index is None else bar.index,
            bar.number,
            bar.start - base,
            None if bar.end is None else bar.end - base,
            _state_code(codes, state_names, bar.state),
            bar.message,
            bar.measured,
        ]
        for bar in bars
    ]


def children_attempts(view: RunView, key: str) -> dict[str, Any]:
    """The attempt rows of one mapped task's children (for a document that left them
    out), with state *names* in the state field: the page maps them to its codes.

    Raises:
        KeyError: no such task in the run.
    """
    if key not in view.by_key:
        raise KeyError(f"run {view.run_id!r} has no task {key!r}")
    order = {k: i for i, k in enumerate(view.keys)}
    _, bars = _last.get(view)
    names: list[str] = []
    rows = _attempt_rows(
        [b for b in bars if b.task == key and b.index is not None],
        order,
        view.started or 0,
        {},
        names,
    )
    for row in rows:
        row[5] = names[row[5]]
    return {"key": key, "attempts": rows}


def run_document(
    view: RunView, damage: dict[str, Any] | None = None, *, lazy: bool | None = None
) -> dict[str, Any]:
    """Everything the run page draws, as JSON-able data.

    ``lazy`` (default: more than :data:`LAZY_CHILDREN` mapped children and a view that
    kept its tasks' timeline) leaves the children's attempts out; each mapped task says
    so in ``children_lazy`` and the page asks :func:`children_attempts` when it opens.
    """
    if lazy is None:
        lazy = view.track and sum(map(len, view.children.values())) > LAZY_CHILDREN
    tasks_meta = view.graph.get("tasks", [])
    names = {t["key"]: t.get("name", t["key"]) for t in tasks_meta}
    order = {k: i for i, k in enumerate(view.keys)}
    state_names: list[str] = []
    codes: dict[str, int] = {}
    tasks: list[dict[str, Any]] = []
    for i, key in enumerate(view.keys):
        run = view.runs[i]
        kids = view.children.get(i, [])
        counts: dict[str, int] = {}
        for kid in kids:
            counts[kid.state.name] = counts.get(kid.state.name, 0) + 1
        tasks.append(
            {
                "key": key,
                "name": names.get(key, key),
                "state": run.state.name,
                "message": run.state.message,
                "attempt": run.attempt,
                "children": len(kids),
                "child_states": counts,
                "child_state": [_state_code(codes, state_names, k.state.name) for k in kids],
                "children_lazy": lazy and bool(kids),
            }
        )
    # attempt times go as ns after the run's start: whole UTC ns (1.7e18) lose their last
    # digits in a JavaScript number, offsets keep every nanosecond for 104 days
    base = view.started or 0
    if lazy:
        # the tasks' and the flow's entries, kept by the one fold (children on demand)
        entries = view.kept_timeline()
        bars = bars_of(entries)
    else:
        # one timeline for the bars and the event list: a replayed view folds its log
        # again for each call
        entries, bars = _last.get(view)
    attempts = _attempt_rows(bars, order, base, codes, state_names)
    edges = [
        [e[0], e[1]] if isinstance(e, list | tuple) else e for e in view.graph.get("edges", [])
    ]
    start = view.started
    last_ts = view.last_event.ts if view.last_event is not None else start
    return {
        "run_id": view.run_id,
        "flow": view.flow_name,
        "state": view.flow_state.name,
        "rule": view.flow_state.message,
        "finished": view.finished(),
        "started": start,
        "ended": view.ended,
        "last_ts": last_ts,
        "head": view.head,
        "parameters": json_safe(view.parameters),
        "parent_run": view.parent_run,
        "trigger": trigger_of(view.run_id, view.flow_name, view.parent_run),
        "reference": [
            {"key": k, "name": names.get(k, k), "state": view.state_of(view.by_key[k]).name}
            for k in view.graph.get("reference", [])
            if k in view.by_key
        ],
        "tasks": tasks,
        "edges": json_safe(edges),
        "states": state_names,
        "attempt_fields": ATTEMPT_FIELDS,
        "attempts": attempts,
        "sessions": [
            {
                "owner": s.owner,
                "why": s.why,
                "epoch": s.epoch,
                "started": s.started,
                "ended": s.ended,
                "reason": s.reason,
            }
            for s in sessions(view)
        ],
        "logs": [
            {"ts": ln.ts, "level": ln.level, "source": ln.source, "message": ln.message}
            for ln in log_lines(view)
        ],
        "events": [
            {"seq": e.seq, "ts": e.ts, "task": e.task, "index": e.index, "new": e.new}
            for e in entries[-2000:]
        ],
        "problems": list(view.problems),
        "damage": damage,
    }


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _PREVIEW else text[: _PREVIEW - 1] + "…"


def task_details(view: RunView, key: str, index: int | None) -> dict[str, Any]:
    """One task's (or mapped child's) attempts, state, result preview, traceback, logs.

    Raises:
        KeyError: no such task or child in the run.
    """
    if key not in view.by_key:
        raise KeyError(f"run {view.run_id!r} has no task {key!r}")
    node = view.by_key[key]
    if index is None:
        run = view.runs[node]
    else:
        kids = view.children.get(node, [])
        if not 0 <= index < len(kids):
            raise KeyError(f"task {key!r} has no mapped child {index}")
        run = kids[index]
    state = run.state
    if index is None and view.track:
        timeline = view.kept_timeline()  # a task's own entries, kept by the fold
        all_bars = bars_of(timeline)
    else:
        timeline, all_bars = _last.get(view)
    entries = [e for e in timeline if e.task == key and e.index == index]
    bars = [b for b in all_bars if b.task == key and b.index == index]
    name = next((t.get("name", key) for t in view.graph.get("tasks", []) if t["key"] == key), key)
    source = name if index is None else f"{name}[{index}]"
    return {
        "key": key,
        "index": index,
        "name": name,
        "state": state.name,
        "message": state.message,
        "result": None if state.result is None else _preview(state.result),
        "traceback": traceback_of(state.result),
        "attempts": [
            {
                "number": b.number,
                "run_count": b.run_count,
                "start": b.start,
                "end": b.end,
                "state": b.state,
                "message": b.message,
                "measured": b.measured,
                "loops": b.loops,
            }
            for b in bars
        ],
        "transitions": [
            {"seq": e.seq, "ts": e.ts, "prev": e.prev, "new": e.new, "message": e.message}
            for e in entries
        ],
        "logs": [
            {"ts": ln.ts, "level": ln.level, "message": ln.message}
            for ln in log_lines(view, notes=False)
            if ln.source == source
        ],
    }


def _pct(values: list[int], q: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def history(store: Store, flow: str, *, last: int = 50) -> dict[str, Any]:
    """Durations and outcomes of a flow's last runs and of each of its tasks.

    Each run is replayed (the store's index has no task states), so ``last`` bounds
    the work.
    """
    metas = store.list_runs(flow_name=flow, limit=last)
    runs: list[dict[str, Any]] = []
    per_task: dict[str, dict[str, Any]] = {}
    for meta in reversed(metas):
        try:
            view = replay(store, meta.run_id)
        except (CorruptEvent, RunNotFound):
            continue
        runs.append(
            {
                "run_id": meta.run_id,
                "state": view.flow_state.name,
                "started": view.started,
                "duration": None
                if view.ended is None or view.started is None
                else view.ended - view.started,
            }
        )
        names = {t["key"]: t.get("name", t["key"]) for t in view.graph.get("tasks", [])}
        for bar in attempt_bars(view):
            if bar.index is not None:
                continue
            t = per_task.setdefault(
                bar.task, {"key": bar.task, "name": names.get(bar.task, bar.task), "points": []}
            )
            t["points"].append(
                {"run_id": meta.run_id, "duration": bar.duration, "state": bar.state}
            )
    for t in per_task.values():
        pts = t["points"]
        durations = [p["duration"] for p in pts if p["duration"] is not None]
        t["median"] = int(statistics.median(durations)) if durations else None
        t["p95"] = _pct(durations, 0.95)
        failed = sum(1 for p in pts if p["state"] in ("Failed", "TimedOut", "TriggerFailed"))
        t["failure_rate"] = failed / len(pts) if pts else None
    durations = [r["duration"] for r in runs if r["duration"] is not None]
    failed_runs = sum(1 for r in runs if r["state"] not in ("Success", "Running", "Pending"))
    return {
        "flow": flow,
        "runs": runs,
        "median": int(statistics.median(durations)) if durations else None,
        "p95": _pct(durations, 0.95),
        "failure_rate": failed_runs / len(runs) if runs else None,
        "tasks": list(per_task.values()),
    }
