"""The runner loop: log -> fold -> decide -> execute -> append, in this process.

One :class:`Driver` drives one run. It holds the run's lease, keeps the live
:class:`~statecore.view.RunView` (folding each event it appends, exactly as replay does),
asks :func:`~statecore.decide.decide` what to do for the tasks whose inputs changed, runs
task bodies (inline when only one is ready, else on a thread pool in batches), turns what
happened into states with :func:`~statecore.decide.settle`, runs state handlers, and
appends the events through the :class:`~statecore.runners.journal.Journal`.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from statecore import machine, signals
from statecore.backends.base import Lease, RunMeta, Store
from statecore.context import (
    reset_context,
    reset_secret_resolver,
    set_context,
    set_secret_resolver,
)
from statecore.decide import (
    RunTask,
    decide,
    entity_run,
    final_state,
    outcome_state,
    settle,
)
from statecore.errors import (
    FlowChanged,
    LeaseHeld,
    LeaseLost,
    RunNotFound,
    SerializationError,
    StatecoreError,
)
from statecore.events import (
    KIND_STATE,
    LogRecord,
    Note,
    RunStarted,
    StateChanged,
    encode_state_change,
)
from statecore.flow import Flow
from statecore.graph import Graph
from statecore.serialization import packb, unpackb
from statecore.states import (
    NOT_PERSISTED,
    Cached,
    Cancelled,
    Failed,
    Finished,
    Looped,
    Mapped,
    Paused,
    Pending,
    Resume,
    Running,
    State,
)
from statecore.view import RunView, TaskStates, fold, state_extra

__all__ = ["LocalRunner", "Driver", "replay", "resume", "run_flow"]

Entity = tuple[int, int | None]


_TASK_TABLE = machine.TASK_TRANSITIONS


def _label(key: str, index: int | None) -> str:
    return key if index is None else f"{key}[{index}]"


def now_ns() -> int:
    """UTC now in integer nanoseconds (the shell's one clock)."""
    return time.time_ns()


class LocalRunner:
    """Runs task bodies in this process.

    Args:
        max_workers: threads for ready tasks (a task runs inline when it is the only one
            ready). Default: 8.
        single_pass: visit each task once, like one pass of Prefect's FlowRunner: retries
            are left Retrying for a later ``resume``.
        group_events: group-commit window, in events.
        group_delay: group-commit window, in seconds.
        lease_ttl: seconds a lease lives without renewal.
        lease_renew: seconds between renewals.
    """

    def __init__(
        self,
        *,
        max_workers: int = 8,
        single_pass: bool = False,
        group_events: int = 512,
        group_delay: float = 0.02,
        lease_ttl: float = 15.0,
        lease_renew: float = 5.0,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self.single_pass = single_pass
        self.group_events = group_events
        self.group_delay = group_delay
        self.lease_ttl = lease_ttl
        self.lease_renew = lease_renew


def _open(store: Store | str | None) -> Store:
    if store is None or isinstance(store, str):
        from statecore.backends import open_store

        return open_store(store)
    return store


def _ready(view: RunView, node: int, complete: bool) -> bool:
    """Whether ``node`` is finished (and, if ``complete``, every mapped child too)."""
    state = view.runs[node].state
    if not state.is_finished() or isinstance(state, Looped):
        return False
    return not (complete and isinstance(state, Mapped) and view.unfinished_children.get(node))


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_is_dead(owner: str) -> bool:
    """True when ``owner`` (``host:pid:token``) is a process of this host that is gone."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def replay(store: Store | str | None, run_id: str) -> RunView:
    """Fold a run's log into a view; no task runs.

    Raises:
        RunNotFound: no such run (the message names the store).
        CorruptEvent: the log cannot be decoded.
    """
    s = _open(store)
    with collector_paused():
        events = s.read(run_id)
        if not events:
            raise RunNotFound(f"no run {run_id!r} in store {s.url}")
        return fold(events, run_id=run_id)


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while reading and folding a log.

    A replay allocates a few small objects per event and no reference cycles; the cyclic
    collector's passes over them cost about a third of a large replay. Reference counting
    still frees everything. Nested and concurrent replays share one pause.
    """
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def check_parameters(graph: Graph, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Validate run parameters against the flow's; return them with defaults filled in."""
    unknown = sorted(set(parameters) - set(graph.parameters))
    if unknown:
        raise ValueError(
            f"Flow.run received the following unexpected parameters: {', '.join(unknown)}"
        )
    missing = sorted(
        name for name, p in graph.parameters.items() if p.required and name not in parameters
    )
    if missing:
        raise ValueError(
            "Flow.run did not receive the following required parameters: " + ", ".join(missing)
        )
    values = {name: p.default for name, p in graph.parameters.items()}
    values.update(parameters)
    return values


def run_flow(
    flow: Flow,
    *,
    parameters: Mapping[str, Any] | None = None,
    store: Store | str | None = None,
    run_id: str | None = None,
    task_states: Mapping[Any, State] | None = None,
    secrets: Mapping[str, str] | None = None,
    runner: LocalRunner | None = None,
    parent_run: str | None = None,
    reuse: Mapping[int, State] | None = None,
) -> State:
    """Run ``flow`` (see :meth:`statecore.Flow.run`)."""
    graph = Graph.of(flow)
    params = check_parameters(graph, parameters or {})
    initial: dict[int, State] = {}
    for ref, st in (task_states or {}).items():
        if not isinstance(st, State):
            raise TypeError(f"task_states values must be States, got {st!r}")
        initial[graph.node_for(ref).index] = st
    s = _open(store)
    runner = runner or LocalRunner()
    if run_id is not None and s.head(run_id) > 0:
        view = replay(s, run_id)
        _check_same_run(graph, view, params)
        if view.finished():
            return _returned_state(graph, view)
        return Driver(graph, s, view, runner, secrets=secrets).drive()
    run_id = run_id or uuid.uuid4().hex
    view = RunView(run_id)
    driver = Driver(graph, s, view, runner, secrets=secrets)
    return driver.drive(
        start=RunStarted(flow.name, graph.record(), _public_params(params, secrets), parent_run),
        initial=initial,
        reuse=reuse,
    )


def _public_params(params: Mapping[str, Any], secrets: Mapping[str, str] | None) -> dict[str, Any]:
    if not secrets:
        return dict(params)
    from statecore.serialization import scrub

    return dict(scrub(dict(params), dict(secrets)))


def _check_same_run(graph: Graph, view: RunView, params: Mapping[str, Any]) -> None:
    recorded = view.graph.get("fingerprint")
    if recorded != graph.record()["fingerprint"]:
        raise ValueError(
            f"run {view.run_id!r} was started by another flow graph "
            f"({describe_changes(view.graph, graph.record())}); choose a new run_id"
        )
    if dict(view.parameters) != dict(params):
        raise ValueError(
            f"run {view.run_id!r} was started with parameters {view.parameters!r}, not "
            f"{dict(params)!r}; choose a new run_id"
        )


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


def resume(
    run_id: str,
    flow: Flow,
    *,
    store: Store | str | None = None,
    approve: Iterable[Any] = (),
    secrets: Mapping[str, str] | None = None,
    runner: LocalRunner | None = None,
    allow_changed: bool = False,
) -> State:
    """Finish an interrupted or paused run.

    Never re-runs a task whose success or skip is logged; runs again a task that was
    Running when its process died (logged ``Pending("Interrupted: ...")``, not counted
    against ``max_retries``); approves exactly the paused tasks in ``approve``.
    Resuming a finished run returns its state and runs nothing.

    Raises:
        RunNotFound: no such run.
        FlowChanged: the flow's structure differs from the run's (unless allow_changed).
        LeaseHeld: another live process drives the run.
    """
    s = _open(store)
    graph = Graph.of(flow)
    view = replay(s, run_id)
    if view.flow_name != flow.name:
        raise FlowChanged(f"run {run_id!r} is a run of flow {view.flow_name!r}, not {flow.name!r}")
    record = graph.record()
    if view.graph.get("fingerprint") != record["fingerprint"] and not allow_changed:
        raise FlowChanged(
            f"flow {flow.name!r} changed since run {run_id!r} started: "
            f"{describe_changes(view.graph, record)}. Pass allow_changed=True "
            "(--allow-changed) to resume anyway"
        )
    if view.finished():
        return _returned_state(graph, view)
    approved = [graph.node_for(ref).index for ref in approve]
    driver = Driver(graph, s, view, runner or LocalRunner(), secrets=secrets)
    return driver.drive(approve=approved, code=record["code"])


def _returned_state(graph: Graph, view: RunView) -> State:
    state = _copy_state(view.flow_state)
    state.run_id = view.run_id
    state.result = TaskStates(view, graph.index_of)
    return state


def _copy_state(state: State) -> State:
    from statecore.decide import _with_result

    return _with_result(state, state.result)


class _LeaseKeeper:
    """Renews the lease in the background; records a loss for the driver to act on."""

    def __init__(self, store: Store, lease: Lease, ttl: float, every: float) -> None:
        self.store = store
        self.lease = lease
        self.ttl = ttl
        self.every = every
        self.lost: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="statecore-lease", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.lease = self.store.renew_lease(self.lease, ttl=self.ttl, now=now_ns())
            except LeaseLost as exc:
                self.lost = exc
                return
            except StatecoreError:
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 1)


class _RunLogger:
    """``context['logger']``: log lines become ``log`` events of the run."""

    MAX_CHARS = 8192

    def __init__(self, sink: Callable[[LogRecord], None]) -> None:
        self._sink = sink

    def _log(self, level: str, msg: object, *args: object) -> None:
        from statecore.context import context

        text = str(msg) % args if args else str(msg)
        if len(text) > self.MAX_CHARS:
            text = text[: self.MAX_CHARS] + f"... [{len(text) - self.MAX_CHARS} chars cut]"
        self._sink(LogRecord(context.get("task_slug"), context.get("map_index"), level, text))

    def debug(self, msg: object, *args: object) -> None:
        self._log("DEBUG", msg, *args)

    def info(self, msg: object, *args: object) -> None:
        self._log("INFO", msg, *args)

    def warning(self, msg: object, *args: object) -> None:
        self._log("WARNING", msg, *args)

    def error(self, msg: object, *args: object) -> None:
        self._log("ERROR", msg, *args)

    def exception(self, msg: object, *args: object) -> None:
        self._log("ERROR", msg, *args)


class _Interrupt(BaseException):
    """Carries a KeyboardInterrupt/SystemExit from a worker to the driver."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(original)
        self.original = original


class Driver:
    """Drives one run to the end (or to a pause) through the one loop."""

    def __init__(
        self,
        graph: Graph,
        store: Store,
        view: RunView,
        runner: LocalRunner,
        *,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        from statecore.runners.journal import Journal

        self.graph = graph
        self.store = store
        self.view = view
        view.track = False
        self.runner = runner
        self.secrets: dict[str, str] = dict(secrets or {})
        # every value handed in is known to the run, so it is scrubbed from the first event
        self.known_secrets: dict[str, str] = {
            name: value for name, value in self.secrets.items() if isinstance(value, str) and value
        }
        self.journal = Journal(
            store,
            view.run_id,
            head=view.head,
            last_event=view.last_event,
            max_events=runner.group_events,
            max_delay=runner.group_delay,
        )
        self.candidates: dict[Entity, None] = {}
        self.waits: list[tuple[int, Entity]] = []
        self.cache: dict[int, list[Cached]] = {}
        self.pending_logs: deque[LogRecord] = deque()
        self.logger = _RunLogger(self.pending_logs.append)
        self.lease_keeper: _LeaseKeeper | None = None
        self.in_flight: dict[Future[Any], list[RunTask]] = {}
        self.pool: ThreadPoolExecutor | None = None
        self.values: dict[Entity, Any] = {}
        self.cancelled = False
        self.took_over_from: str | None = None
        self._next_cancel_check = 0.0
        self.blockers: list[int] = []
        self.needs_complete: list[dict[int, bool]] = []

    # -- the loop -----------------------------------------------------------------------

    def drive(
        self,
        *,
        start: RunStarted | None = None,
        initial: Mapping[int, State] | None = None,
        approve: Sequence[int] = (),
        code: Mapping[str, str] | None = None,
        reuse: Mapping[int, State] | None = None,
    ) -> State:
        """Run until the flow finishes or nothing more can run now; return its state."""
        self._acquire_lease()
        try:
            try:
                if start is not None:
                    self._begin(start, initial or {}, reuse or {})
                else:
                    self._resume_prelude(approve, code or {})
                if self.took_over_from is not None:
                    self._note(
                        "takeover",
                        f"took the run over from {self.took_over_from}, a process of this "
                        "host that is gone",
                        {"previous_owner": self.took_over_from},
                    )
                self._load_cache()
                self._init_blockers()
                for node_i, waiting in enumerate(self.blockers):
                    if waiting:
                        self.candidates.pop((node_i, None), None)
                self._loop()
                self._finish()
            finally:
                try:
                    self._flush_logs()
                    self.journal.flush()
                finally:
                    if self.pool is not None:
                        self.pool.shutdown(wait=False, cancel_futures=True)
                    self._release_lease()
        except _Interrupt as exc:
            raise exc.original from None
        return _returned_state(self.graph, self.view)

    def _acquire_lease(self) -> None:
        r = self.runner
        run_id = self.view.run_id
        now = now_ns()
        try:
            lease = self.store.acquire_lease(run_id, owner=_owner(), ttl=r.lease_ttl, now=now)
        except LeaseHeld:
            held = self.store.get_lease(run_id)
            if held is None or not _holder_is_dead(held.owner):
                raise
            # The holder ran on this host and its process is gone: its lease can only
            # lapse, so take the run over now instead of waiting for the expiry.
            lease = self.store.acquire_lease(
                run_id, owner=_owner(), ttl=r.lease_ttl, now=max(now, held.expires + 1)
            )
            self.took_over_from = held.owner
        self.journal.lease = lease
        self.lease_keeper = _LeaseKeeper(self.store, lease, r.lease_ttl, r.lease_renew)

    def _release_lease(self) -> None:
        if self.lease_keeper is None:
            return
        self.lease_keeper.stop()
        lease = self.lease_keeper.lease
        self.lease_keeper = None
        with contextlib.suppress(StatecoreError):
            self.store.release_lease(lease)

    def _check_lease(self) -> None:
        keeper = self.lease_keeper
        if keeper is not None:
            if keeper.lost is not None:
                raise LeaseLost(
                    f"run {self.view.run_id!r}: this driver lost its lease ({keeper.lost}); "
                    "another process has taken the run over"
                )
            self.journal.lease = keeper.lease

    def _begin(
        self, start: RunStarted, initial: Mapping[int, State], reuse: Mapping[int, State]
    ) -> None:
        ts = now_ns()
        event = self.journal.add(start, ts)
        self.view.apply(event)
        self._flow_transition(Running("Running flow."), ts)
        for node, state in {**reuse, **initial}.items():
            self._transition(node, None, state, 0, now_ns(), handlers=False)
        for node in range(len(self.graph.nodes)):
            self.candidates[(node, None)] = None

    def _resume_prelude(self, approve: Sequence[int], code: Mapping[str, str]) -> None:
        ts = now_ns()
        view = self.view
        changed = [k for k, h in code.items() if view.graph.get("code", {}).get(k) not in (None, h)]
        if changed:
            self._note(
                "code-changed",
                "task code changed since the run started: " + ", ".join(changed),
                {"tasks": changed},
            )
        if isinstance(view.flow_state, Pending):
            self._flow_transition(Running("Running flow."), ts)
        for node_i, index in [(i, None) for i in range(len(view.runs))] + [
            (i, j) for i, kids in view.children.items() for j in range(len(kids))
        ]:
            run = entity_run(view, node_i, index)
            if isinstance(run.state, Running | Looped):
                self._transition(
                    node_i,
                    index,
                    Pending(
                        f"Interrupted: the process running attempt {run.attempt} stopped "
                        "before it finished"
                    ),
                    run.attempt,
                    now_ns(),
                    handlers=False,
                )
        for node_i in approve:
            state = view.runs[node_i].state
            if isinstance(state, Paused):
                self._transition(node_i, None, Resume("Approved"), 0, now_ns(), handlers=False)
            for j, child in enumerate(view.children.get(node_i, ())):
                if isinstance(child.state, Paused):
                    self._transition(node_i, j, Resume("Approved"), 0, now_ns(), handlers=False)
        from statecore.decide import all_entities

        for entity in all_entities(view):
            self.candidates[entity] = None

    def _load_cache(self) -> None:
        now = now_ns()
        for node in self.graph.nodes:
            if node.cache_for_ns is None:
                continue
            found: list[Cached] = []
            for entry in self.store.cache_get(self._cache_key(node.index), now=now):
                try:
                    message, result, inputs, params, expires = unpackb(entry.payload)
                except Exception:
                    continue
                found.append(Cached(message, result, inputs, params, expires))
            self.cache[node.index] = found

    def _cache_key(self, node: int) -> str:
        n = self.graph.nodes[node]
        return n.cache_key or f"{self.graph.flow_name}:{n.key}"

    def _cancel_requested(self) -> bool:
        if self.cancelled:
            return True
        tick = time.monotonic()
        if tick < self._next_cancel_check:
            return False
        self._next_cancel_check = tick + 0.5
        self.cancelled = self.store.cancel_requested(self.view.run_id, now=now_ns())
        return self.cancelled

    def _cancel_unstarted(self) -> None:
        """Cancel every task and mapped child that has not started."""
        from statecore.decide import all_entities

        self.candidates.clear()
        self.waits.clear()
        for node_i, index in all_entities(self.view):
            run = entity_run(self.view, node_i, index)
            if isinstance(run.state, Pending):
                self._transition(
                    node_i, index, Cancelled("Cancelled: the run was cancelled"), 0, now_ns()
                )
        self.candidates.clear()

    def _loop(self) -> None:
        view = self.view
        graph = self.graph
        retry_now = not self.runner.single_pass
        while True:
            self._check_lease()
            if self._cancel_requested():
                while self.in_flight:
                    self._collect()
                self._cancel_unstarted()
                return
            if self.candidates:
                batch = list(self.candidates)
                self.candidates.clear()
                now = now_ns()
                decision = decide(graph, view, now, batch, cache=self.cache, retry_now=retry_now)
                for action in decision.set_states:
                    self._transition(action.node, action.index, action.state, 0, now)
                for wake in decision.wake:
                    heapq.heappush(self.waits, wake)
                if decision.run:
                    self._start(decision.run)
                if self.candidates:
                    continue
            if self.in_flight:
                self._collect()
                continue
            if self.journal.due():
                self.journal.flush()
            if self.waits:
                self._wait_for_retry()
                continue
            break

    def _wait_for_retry(self) -> None:
        when, _ = self.waits[0]
        delay = (when - now_ns()) / 1e9
        if delay > 0:
            self._flush_logs()
            self.journal.flush()
            time.sleep(min(delay, max(self.runner.lease_renew / 2, 0.05)))
        now = now_ns()
        while self.waits and self.waits[0][0] <= now:
            _, entity = heapq.heappop(self.waits)
            self.candidates[entity] = None

    # -- running task bodies ------------------------------------------------------------

    def _start(self, runs: list[RunTask]) -> None:
        started: list[RunTask] = []
        for rt in runs:
            if any(v is NOT_PERSISTED for v in rt.inputs.values()):
                try:
                    rt = self._rehydrate(rt)
                except StatecoreError as exc:
                    self._transition(rt.node, rt.index, Failed(str(exc)), rt.attempt, now_ns())
                    continue
            state = self._transition(
                rt.node, rt.index, Running("Starting task run."), rt.attempt, now_ns()
            )
            if isinstance(state, Running):
                started.append(rt)
        if not started:
            return
        if (len(started) == 1 and not self.in_flight) or self.runner.max_workers == 1:
            for rt in started:
                self._settle(rt, self._execute(rt))
            return
        if self.pool is None:
            self.pool = ThreadPoolExecutor(
                max_workers=self.runner.max_workers, thread_name_prefix="statecore-task"
            )
        # Batches amortise the pool's round trip over many short tasks; one batch per
        # worker keeps every worker busy when the bodies are long.
        size = max(1, -(-len(started) // self.runner.max_workers))
        for i in range(0, len(started), size):
            chunk = started[i : i + size]
            self.in_flight[self.pool.submit(self._execute_many, chunk)] = chunk

    def _execute_many(self, chunk: list[RunTask]) -> list[tuple[BaseException | None, Any]]:
        return [self._execute(rt) for rt in chunk]

    def _collect(self) -> None:
        """Settle finished batches; wakes at least every group window to commit."""
        timeout = self.runner.group_delay if self.journal.buffer else 0.5
        done, _ = wait(list(self.in_flight), timeout=timeout, return_when=FIRST_COMPLETED)
        if not done:
            self._flush_logs()
            self.journal.flush()
            return
        for fut in done:
            chunk = self.in_flight.pop(fut)
            for rt, outcome in zip(chunk, fut.result(), strict=True):
                self._settle(rt, outcome)

    def _context(self, rt: RunTask) -> dict[str, Any]:
        node = self.graph.nodes[rt.node]
        full = node.name if rt.index is None else f"{node.name}[{rt.index}]"
        ctx: dict[str, Any] = {
            "run_id": self.view.run_id,
            "flow_name": self.graph.flow_name,
            "flow_run_name": self.view.run_id,
            "task_name": node.name,
            "task_full_name": full,
            "task_slug": node.key,
            "task_tags": node.task.tags,
            "map_index": rt.index,
            "parameters": self.view.parameters,
            "task_run_count": rt.attempt,
            "resume": rt.resume,
            "scheduled_start_time": self.view.started,
            "logger": self.logger,
        }
        if rt.loop_count:
            ctx["task_loop_count"] = rt.loop_count + 1
            ctx["task_loop_result"] = rt.loop_result
        return ctx

    def _resolve_secret(self, name: str) -> Any:
        value: Any = self.secrets.get(name)
        if value is None:
            value = os.environ.get(f"STATECORE_SECRET_{name}")
            if value is None:
                value = os.environ.get(f"STATECORE_SECRET_{name.upper()}")
            if value is None:
                value = os.environ.get(name)
        if value is None:
            raise signals.FAIL(f'Secret "{name}" was not found')
        if isinstance(value, str) and value:
            self.known_secrets[name] = value
        return value

    def _execute(self, rt: RunTask) -> tuple[BaseException | None, Any]:
        """Run one attempt's body; returns (exception or None, value)."""
        node = self.graph.nodes[rt.node]
        token = set_context(self._context(rt))
        secret_token = set_secret_resolver(self._resolve_secret)
        try:
            if node.timeout is not None:
                return self._execute_with_timeout(node.task.run, rt.inputs, node.timeout)
            try:
                return None, node.task.run(**rt.inputs)
            except (KeyboardInterrupt, SystemExit) as exc:
                raise _Interrupt(exc) from exc
            except BaseException as exc:
                return exc, None
        finally:
            reset_context(token)
            reset_secret_resolver(secret_token)

    def _execute_with_timeout(
        self, fn: Callable[..., Any], inputs: Mapping[str, Any], timeout: float
    ) -> tuple[BaseException | None, Any]:
        box: list[tuple[BaseException | None, Any]] = []
        import contextvars

        ctx = contextvars.copy_context()

        def target() -> None:
            try:
                box.append((None, ctx.run(fn, **inputs)))
            except BaseException as exc:
                box.append((exc, None))

        thread = threading.Thread(target=target, name="statecore-timeout", daemon=True)
        thread.start()
        thread.join(timeout)
        if not box:
            # A Python thread cannot be killed: the attempt is recorded TimedOut now and
            # whatever it does later is discarded (its box is never read again).
            err = TimeoutError(f"Task timed out after {timeout} seconds")
            err.statecore_timeout = True  # type: ignore[attr-defined]
            return err, None
        exc, value = box[0]
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise _Interrupt(exc)
        return exc, value

    def _settle(self, rt: RunTask, outcome: tuple[BaseException | None, Any]) -> None:
        """Turn an attempt's outcome into states; run LOOP iterations until they end."""
        node = self.graph.nodes[rt.node]
        while True:
            exc, value = outcome
            state, ended = outcome_state(exc, value, rt.loop_count + 1)
            now = now_ns()
            if not isinstance(state, Looped):
                break
            if not isinstance(self._transition(rt.node, rt.index, state, rt.attempt, now), Looped):
                return
            restarted = self._transition(
                rt.node, rt.index, Running("Starting task run."), rt.attempt, now_ns()
            )
            if not isinstance(restarted, Running):
                return
            rt = RunTask(
                rt.node, rt.index, rt.inputs, rt.attempt, rt.resume, state.loop_count, state.result
            )
            outcome = self._execute(rt)
        final = settle(
            node,
            state,
            attempt=rt.attempt,
            now=now,
            inputs=rt.inputs,
            parameters=self.view.parameters,
            ended_run=ended,
        )
        if not node.checkpoint or node.is_secret:
            self.values[(rt.node, rt.index)] = final.result
        self._transition(rt.node, rt.index, final, rt.attempt, now)
        if isinstance(final, Cached) and not isinstance(state, Cached):
            self._cache_put(rt.node, final)

    def _cache_put(self, node: int, state: Cached) -> None:
        try:
            payload = packb(
                [
                    state.message,
                    state.result,
                    state.cached_inputs,
                    state.cached_parameters,
                    state.cached_result_expiration,
                ]
            )
        except SerializationError:
            return
        expires = state.cached_result_expiration or 0
        self.store.cache_put(self._cache_key(node), payload, expires=expires)
        self.cache.setdefault(node, []).insert(0, state)

    def _rehydrate(self, rt: RunTask) -> RunTask:
        """Recompute inputs whose results were never stored (secrets, checkpoint=False)."""
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
        from statecore.decide import task_inputs, upstream_states

        node = self.graph.nodes[node_i]
        upstream = upstream_states(self.graph, self.view, node, None) or {}
        inputs = task_inputs(node, upstream)
        for inp in node.inputs:
            if inp.key is not None and inputs.get(inp.key) is NOT_PERSISTED:
                inputs[inp.key] = self._recompute(inp.upstream)
        rt = RunTask(node_i, None, inputs, 1)
        self._note(
            "rehydrate", f"re-ran {node.key} to recompute a result that was not stored", None
        )
        exc, value = self._execute(rt)
        if exc is not None:
            raise StatecoreError(
                f"could not recompute the unstored result of {node.key}: {exc!r}"
            ) from exc
        self.values[key] = value
        return value

    # -- transitions --------------------------------------------------------------------

    def _transition(
        self,
        node_i: int,
        index: int | None,
        new: State,
        attempt: int,
        ts: int,
        *,
        handlers: bool = True,
    ) -> State:
        """Run handlers, check the machine, append and fold one task state change."""
        view = self.view
        run = entity_run(view, node_i, index)
        old = run.state
        node = self.graph.nodes[node_i]
        if handlers and node.has_handlers:
            new = self._call_task_handlers(node_i, old, new)
        key = node.key
        old_name = type(old).__name__
        new_name = type(new).__name__
        if new_name not in _TASK_TABLE.get(old_name, ()):
            machine.check_task(view.run_id, _label(key, index), old_name, new_name)
        result = new.result
        stored = node.checkpoint and not node.is_secret
        if type(new) is Mapped:
            result, stored = None, True
        message = new.message
        if self.known_secrets:
            if stored:
                result = self._scrub(result)
            message = self._scrub(message)
        try:
            payload = encode_state_change(
                key, index, old_name, new_name, attempt, message, result, stored, state_extra(new)
            )
        except SerializationError as exc:
            new = Failed(
                f"The result of task {_label(key, index)} could not be stored: {exc}. "
                "Set checkpoint=False on the task, or register a serializer "
                "(statecore.serialization.register_serializer).",
                result=None,
            )
            new_name = "Failed"
            machine.check_task(view.run_id, _label(key, index), old_name, new_name)
            payload = encode_state_change(
                key, index, old_name, new_name, attempt, new.message, None, True, None
            )
        event = self.journal.add_payload(KIND_STATE, payload, ts)
        view.apply_state(node_i, index, new, attempt, ts, event.seq)
        view.head = event.seq
        view.last_event = event
        if self.pending_logs:
            self._flush_logs()
        self._after(node_i, index, new)
        return new

    def _scrub(self, value: Any) -> Any:
        from statecore.serialization import scrub

        return scrub(value, self.known_secrets)

    def _init_blockers(self) -> None:
        """Count, per task, the upstream tasks it still waits for.

        A task waits for an upstream to be *finished* when it only maps over it (a
        Mapped parent suffices to expand), else to be *complete* (finished, with every
        mapped child finished). Only a task whose count reaches zero is handed to
        ``decide``, so a reducer over 10,000 children is checked once, not 10,000 times.
        """
        view = self.view
        self.needs_complete = []
        self.blockers = []
        for node in self.graph.nodes:
            needs: dict[int, bool] = {}
            for inp in node.inputs:
                if inp.upstream >= 0:
                    full = not inp.mapped or inp.flattened
                    needs[inp.upstream] = needs.get(inp.upstream, False) or full
            self.needs_complete.append(needs)
            self.blockers.append(sum(1 for u, full in needs.items() if not _ready(view, u, full)))

    def _release(self, node_i: int, *, complete: bool) -> None:
        """``node_i`` became finished (or complete): queue the tasks that now may run."""
        if not self.blockers:
            return
        blockers = self.blockers
        for d in self.graph.nodes[node_i].downstream:
            if self.needs_complete[d][node_i] is complete:
                blockers[d] -= 1
                if blockers[d] == 0:
                    self.candidates[(d, None)] = None

    def _after(self, node_i: int, index: int | None, new: State) -> None:
        """Queue the tasks whose inputs this change may have completed."""
        if not isinstance(new, Finished) or isinstance(new, Looped):
            if isinstance(new, Pending):
                self.candidates[(node_i, index)] = None
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
            if nodes[d].mapped and d in view.children:
                self.candidates[(d, index)] = None
        if view.unfinished_children.get(node_i, 0) == 0:
            self._release(node_i, complete=True)

    def _call_task_handlers(self, node_i: int, old: State, new: State) -> State:
        task = self.graph.nodes[node_i].task
        self._flush_logs()
        self.journal.flush()
        try:
            for handler in task.state_handlers:
                new = handler(task, old, new) or new
            if task.on_failure is not None and new.is_failed():
                task.on_failure(task, new)
        except (signals.ENDRUN, signals.PAUSE) as sig:
            return sig.state
        except signals.StateSignal as sig:
            return sig.state
        except Exception as exc:
            return Failed(f"Unexpected error while calling state handlers: {exc!r}", result=exc)
        return new

    def _flow_transition(self, new: State, ts: int) -> None:
        view = self.view
        old = view.flow_state
        flow = self.graph.flow
        if flow.state_handlers or flow.on_failure:
            self._flush_logs()
            self.journal.flush()
            try:
                for handler in flow.state_handlers:
                    new = handler(flow, old, new) or new
                if flow.on_failure is not None and new.is_failed():
                    flow.on_failure(flow, new)
            except Exception as exc:
                new = Failed(f"Unexpected error while calling state handlers: {exc!r}", result=exc)
        machine.check_flow(view.run_id, old.name, new.name)
        event = self.journal.add(
            StateChanged(None, None, old.name, new.name, 0, new.message, None, True, None), ts
        )
        view.apply_state(None, None, new, 0, ts, event.seq)
        view.advance(event)
        self.journal.set_meta(self._meta())

    def _meta(self) -> RunMeta:
        view = self.view
        return RunMeta(
            view.run_id,
            view.flow_name,
            view.flow_state.name,
            view.started or now_ns(),
            view.ended,
            0,
            view.parent_run,
        )

    def _note(self, code: str, message: str, data: dict[str, Any] | None) -> None:
        self.view.apply(self.journal.add(Note(code, message, data), now_ns()))

    def _flush_logs(self) -> None:
        logs = self.pending_logs
        while logs:
            record = logs.popleft()
            if self.known_secrets:
                record = LogRecord(
                    record.task, record.index, record.level, self._scrub(record.message)
                )
            self.view.apply(self.journal.add(record, now_ns()))

    def _finish(self) -> None:
        if self.cancelled:
            self._flow_transition(Cancelled("Cancelled by request."), now_ns())
            return
        state = final_state(self.graph, self.view)
        if state.is_finished():
            self._flow_transition(state, now_ns())
        else:
            self.journal.set_meta(self._meta())


__all__ += ["LeaseHeld", "check_parameters", "now_ns"]
