"""The runner entry points: ``run_flow`` (``flow.run``), ``resume``, ``replay``, ``rerun``.

``rerun(run_id, flow, from_task)`` starts a **new** run with the parent run's parameters:
every task that is not ``from_task`` or downstream of it starts in the final state its
parent run logged (result included, see :func:`statecore.plans.plan_rerun`); the new
run's first event records the parent run's id (``RunMeta.parent_run``).

``flow.run`` and :func:`resume` compile the flow, check the run, and hand it to a
:class:`~statecore.runners.driver.Driver`, the one loop of fold -> decide -> execute ->
append. :class:`LocalRunner` runs task bodies in this process: inline when only one is
ready, else on a thread pool in batches.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from statecore.backends.base import Store
from statecore.errors import FlowChanged, InvalidRunId, RunNotFound
from statecore.events import EventRow, RunStarted
from statecore.flow import Flow
from statecore.fold import RunView, fold_rows
from statecore.graph import Graph
from statecore.plans import describe_changes, plan_rerun
from statecore.runners.driver import Driver, returned_state
from statecore.runners.execution import Executor, RunLogger, Runner, RunOptions, ThreadExecutor
from statecore.runners.leases import now_ns
from statecore.scrubbing import scrub
from statecore.states import State

__all__ = [
    "LocalRunner",
    "check_parameters",
    "check_run_id",
    "collector_paused",
    "now_ns",
    "replay",
    "rerun",
    "resume",
    "run_flow",
]


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
        # a lone ready task runs in the driver's thread (no pool round trip); with one
        # worker every task does
        self.options = RunOptions(
            single_pass=single_pass,
            group_events=group_events,
            group_delay=group_delay,
            lease_ttl=lease_ttl,
            lease_renew=lease_renew,
            inline_when_alone=True,
        )

    # the constructor's arguments stay readable under their own names
    @property
    def single_pass(self) -> bool:
        return self.options.single_pass

    @property
    def group_events(self) -> int:
        return self.options.group_events

    @property
    def group_delay(self) -> float:
        return self.options.group_delay

    @property
    def lease_ttl(self) -> float:
        return self.options.lease_ttl

    @property
    def lease_renew(self) -> float:
        return self.options.lease_renew

    def make_executor(self, logger: RunLogger, resolve_secret: Callable[[str], Any]) -> Executor:
        """A thread pool of ``max_workers`` threads."""
        return ThreadExecutor(self.max_workers, logger, resolve_secret)


def _open(store: Store | str | None) -> Store:
    if store is None or isinstance(store, str):
        from statecore.backends import open_store

        return open_store(store)
    return store


def check_run_id(run_id: object) -> str:
    """A run id must be non-empty text without NUL that can be written as UTF-8.

    (NUL cannot be typed on a command line, ends C strings in the stores' clients and
    in terminals, so a run id holding one could be written but never asked for again.)

    Raises:
        InvalidRunId: with what is wrong, before anything is written.
    """
    if not isinstance(run_id, str) or not run_id:
        raise InvalidRunId(f"a run id must be a non-empty string, got {run_id!r}")
    if "\x00" in run_id:
        raise InvalidRunId(f"run id {run_id!r} holds a NUL character; use plain text")
    try:
        run_id.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRunId(
            f"run id {run_id!r} cannot be written as UTF-8 ({exc.reason}); use plain text"
        ) from None
    return run_id


def replay(store: Store | str | None, run_id: str, until: int | datetime | None = None) -> RunView:
    """Fold a run's log into a view; no task runs.

    Args:
        store: the store (or its URL; None: the default store).
        run_id: the run.
        until: fold only that far (time travel): a sequence number (the events up to
            and including it), or an aware datetime (the events logged at or before it).

    Raises:
        RunNotFound: no such run (the message names the store).
        CorruptEvent: the log cannot be decoded.
        ValueError: ``until`` is not a positive sequence number or an aware datetime.
    """
    return _replay(store, run_id, until, task_timeline=False)


def replay_with_task_timeline(
    store: Store | str | None, run_id: str, until: int | datetime | None = None
) -> RunView:
    """:func:`replay`, keeping the tasks' and the flow's timeline entries as it folds
    (:meth:`RunView.kept_timeline`; the mapped children's are read again on demand by
    :meth:`RunView.timeline`): the ui's run page draws a 100,000-child map from it."""
    return _replay(store, run_id, until, task_timeline=True)


def _replay(
    store: Store | str | None, run_id: str, until: int | datetime | None, *, task_timeline: bool
) -> RunView:
    check_run_id(run_id)
    s = _open(store)
    cut = _until(until)

    def rows() -> Iterable[EventRow]:
        found = s.scan(run_id)
        return found if cut is None else itertools.takewhile(cut, found)

    with collector_paused():
        # rows, not events: replay needs no hash or epoch until the last event
        view = fold_rows(rows(), run_id=run_id, again=rows, task_timeline=task_timeline)
    if view.head == 0:
        if until is not None and s.head(run_id) > 0:
            raise RunNotFound(f"run {run_id!r} has no event at or before {until!r}")
        raise RunNotFound(f"no run {run_id!r} in store {s.url}")
    last = s.read(run_id, after=view.head - 1, limit=1)
    if not last:
        raise RunNotFound(f"run {run_id!r} was deleted from store {s.url} while replaying")
    view.last_event = last[0]
    return view


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _until(until: int | datetime | None) -> Callable[[EventRow], bool] | None:
    if until is None:
        return None
    if isinstance(until, datetime):
        if until.tzinfo is None or until.utcoffset() is None:
            raise ValueError(f"until= must be an aware datetime, got {until!r}")
        # the whole microsecond it names counts as "at" it
        limit = (until - _EPOCH) // timedelta(microseconds=1) * 1000 + 999
        return lambda row: row[2] <= limit
    if isinstance(until, bool) or not isinstance(until, int) or until < 1:
        raise ValueError(f"until= must be a sequence number >= 1 or a datetime, got {until!r}")
    return lambda row: row[0] <= until


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
    secrets: Mapping[str, Any] | None = None,
    runner: Runner | None = None,
    parent_run: str | None = None,
    reuse: Mapping[int, State] | None = None,
    scheduled_start_time: int | None = None,
) -> State:
    """Run ``flow`` (see :meth:`statecore.Flow.run`).

    ``scheduled_start_time`` (UTC ns) marks a new run as a schedule slot's (see
    :mod:`statecore.runners.scheduling`); a resumed run keeps the slot it logged.
    """
    graph = Graph.of(flow)
    params = check_parameters(graph, parameters or {})
    initial: dict[int, State] = {}
    for ref, st in (task_states or {}).items():
        if not isinstance(st, State):
            raise TypeError(f"task_states values must be States, got {st!r}")
        initial[graph.node_for(ref).index] = st
    if run_id is not None:
        check_run_id(run_id)
    s = _open(store)
    runner = runner or LocalRunner()
    if run_id is not None and s.head(run_id) > 0:
        view = replay(s, run_id)
        _check_same_run(graph, view, params)
        if view.finished():
            return returned_state(graph, view)
        return Driver(graph, s, view, runner, secrets=secrets).drive()
    run_id = run_id or uuid.uuid4().hex
    view = RunView(run_id)
    driver = Driver(graph, s, view, runner, secrets=secrets)
    return driver.drive(
        start=RunStarted(flow.name, graph.record(), _public_params(params, secrets), parent_run),
        initial=initial,
        reuse=reuse,
        scheduled=scheduled_start_time,
    )


def _public_params(params: Mapping[str, Any], secrets: Mapping[str, Any] | None) -> dict[str, Any]:
    if not secrets:
        return dict(params)
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


def resume(
    run_id: str,
    flow: Flow,
    *,
    store: Store | str | None = None,
    approve: Iterable[Any] = (),
    secrets: Mapping[str, Any] | None = None,
    runner: Runner | None = None,
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
        return returned_state(graph, view)
    approved = [graph.node_for(ref).index for ref in approve]
    driver = Driver(graph, s, view, runner or LocalRunner(), secrets=secrets)
    return driver.drive(approve=approved, code=record["code"], record=record)


def rerun(
    run_id: str,
    flow: Flow,
    from_task: Any,
    *,
    store: Store | str | None = None,
    new_run_id: str | None = None,
    secrets: Mapping[str, Any] | None = None,
    runner: Runner | None = None,
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
    s = _open(store)
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
