"""The driver: one run's loop of fold -> decide -> execute -> append.

One :class:`Driver` drives one run. It holds the run's lease, keeps the live
:class:`~statecore.fold.RunView` (folding each event it appends, exactly as replay does),
asks :func:`~statecore.decide.decide` what to do for the tasks whose inputs changed, runs
task bodies through its runner's executor, turns what happened into states with
:func:`~statecore.decide.settle`, runs state handlers, and appends the events through the
:class:`~statecore.runners.journal.Journal`.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from statecore import machine
from statecore.backends.base import Lease, Store
from statecore.decide import (
    RunTask,
    all_entities,
    blocker_counts,
    cancel,
    decide,
    entity_run,
    final_state,
    interrupt,
    loop_restart,
    outcome_state,
    seed,
    settle,
    task_inputs,
    upstream_states,
    with_result,
)
from statecore.decide import approve as approve_paused
from statecore.errors import (
    ConcurrencyError,
    LeaseHeld,
    LeaseLost,
    StatecoreError,
)
from statecore.events import (
    LogRecord,
    RunStarted,
)
from statecore.fold import RunView, TaskStates
from statecore.graph import Graph
from statecore.runners.bodies import Bodies
from statecore.runners.execution import (
    Attempt,
    Executor,
    Interrupt,
    Outcome,
    RunLogger,
)
from statecore.runners.journal import Journal
from statecore.runners.leases import LeaseKeeper, holder_is_dead, new_owner, now_ns
from statecore.runners.recorder import Recorder
from statecore.runners.result_cache import ResultCache
from statecore.sessions import LostSession, iso_ns, open_session
from statecore.states import (
    NOT_PERSISTED,
    Cached,
    Cancelled,
    Failed,
    Finished,
    Looped,
    Mapped,
    Pending,
    Retrying,
    Running,
    State,
)

__all__ = ["Driver", "Runner", "returned_state"]

Entity = tuple[int, int | None]
_TASK_TABLE = machine.TASK_TRANSITIONS


class Runner(Protocol):
    """What the driver needs of a runner (``LocalRunner``, ``DaskRunner``)."""

    max_workers: int
    single_pass: bool
    group_events: int
    group_delay: float
    lease_ttl: float
    lease_renew: float
    #: run a lone ready task in the driver's thread instead of the executor
    inline_when_alone: bool

    def make_executor(self, logger: RunLogger, resolve_secret: Callable[[str], Any]) -> Executor:
        """The executor for this run's task bodies."""


def _terminate_as_exit() -> Callable[[], None]:
    """Make SIGTERM raise SystemExit while a run is driven, so it ends the way Ctrl-C
    does (outcomes logged, open attempts interrupted); only in the main thread, and only
    when SIGTERM has its default handler. Returns the function that puts it back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return lambda: None

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)

    def restore() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return restore


@functools.cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("statecore")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def _label(key: str, index: int | None) -> str:
    return key if index is None else f"{key}[{index}]"


def returned_state(graph: Graph, view: RunView) -> State:
    """The flow's state as ``flow.run`` returns it: ``run_id`` and ``result`` set."""
    state = _copy_state(view.flow_state)
    state.run_id = view.run_id
    state.result = TaskStates(view, graph.index_of)
    return state


def _copy_state(state: State) -> State:
    return with_result(state, state.result)


class Driver:
    """Drives one run to the end (or to a pause) through the one loop."""

    def __init__(
        self,
        graph: Graph,
        store: Store,
        view: RunView,
        runner: Runner,
        *,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
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
        self.cache = ResultCache(
            store,
            graph,
            lambda value: bool(self.known_secrets) and self.record.scrub(value) is not value,
        )
        #: entities that ran in this call (a single pass runs each at most once)
        self.attempted: set[Entity] = set()
        self.pending_logs: deque[LogRecord] = deque()
        self.logger = RunLogger(self.pending_logs.append)
        self.lease_keeper: LeaseKeeper | None = None
        #: attempts on the executor, by the token they were handed out with
        self.in_flight: dict[int, RunTask] = {}
        self.tokens = 0
        #: the attempt running in the driver's own thread, if any
        self.inline: RunTask | None = None
        self.lease: Lease | None = None
        #: the owner of this driver's session, while it is open
        self.session: str | None = None
        #: the retries (node, index, attempt) that made a pass over the Cached tasks
        self.revisited: set[tuple[int, int | None, int]] = set()
        #: whether a retry can make Prefect 1 look at Cached tasks again (see _loop)
        self.may_retry = not runner.single_pass and any(n.max_retries for n in graph.nodes)
        self.executor: Executor | None = None
        self.redispatch: list[RunTask] = []
        self.values: dict[Entity, Any] = {}
        self.cancelled = False
        self.may_lack_results = view.head > 0
        self.took_over_from: str | None = None
        self._next_cancel_check = 0.0
        self.blockers: list[int] = []
        self.needs_complete: list[dict[int, bool]] = []
        #: the run's schedule slot (UTC ns), else when it started; set once the log's
        #: opening notes are in (see drive)
        self.record = Recorder(
            graph, view, self.journal, self.known_secrets, self.pending_logs, self._after
        )
        self.bodies = Bodies(graph, view, self.secrets, self.known_secrets, self.logger)

    # -- the loop -----------------------------------------------------------------------

    def drive(
        self,
        *,
        start: RunStarted | None = None,
        initial: Mapping[int, State] | None = None,
        approve: Sequence[int] = (),
        code: Mapping[str, str] | None = None,
        reuse: Mapping[int, State] | None = None,
        record: Mapping[str, Any] | None = None,
        scheduled: int | None = None,
    ) -> State:
        """Run until the flow finishes or nothing more can run now; return its state.

        The lease is taken first and the log read under it, so what this driver decides
        from is the log as it is while nobody else can write to it. ``scheduled`` (UTC
        ns, a new run only) is the schedule slot the run is for: logged as a
        ``scheduled`` note, so a resume sees the same ``scheduled_start_time``.

        Raises:
            LeaseHeld: another live process drives the run, or a new run's id was taken
                by another process meanwhile.
        """
        previous = self._acquire_lease()
        ending = "error"
        restore = _terminate_as_exit()
        try:
            try:
                self._catch_up()
                if start is not None and self.view.head > 0:
                    raise LeaseHeld(
                        f"run {self.view.run_id!r} was started by another process "
                        "while this one was starting it; it runs nothing"
                    )
                if start is None and self.view.finished():
                    ending = "nothing to do"
                    return returned_state(self.graph, self.view)
                self.journal.start_committer()
                self.bodies.learn_secrets()
                if start is not None:
                    self._begin(start, initial or {}, reuse or {})
                    self._open_session("run", None)
                    if scheduled is not None:
                        self.record.note(
                            "scheduled", "run for a schedule slot", {"start_time": scheduled}
                        )
                else:
                    lost = self._lost_session(previous)
                    why = "takeover" if self.took_over_from is not None else "resume"
                    self._open_session(why, lost)
                    if self.took_over_from is not None:
                        self.record.note(
                            "takeover",
                            f"took the run over from {self.took_over_from}, a process of "
                            "this host that is gone",
                            {"previous_owner": self.took_over_from},
                        )
                    self._resume_prelude(approve, code or {}, record, lost)
                self.bodies.scheduled_start = self._logged_slot()
                self.cache.load(now_ns())
                self._init_blockers()
                for node_i, waiting in enumerate(self.blockers):
                    if waiting:
                        self.candidates.pop((node_i, None), None)
                try:
                    self._loop()
                except (Interrupt, KeyboardInterrupt, SystemExit) as exc:
                    ending = "interrupted"
                    self._interrupted(exc)
                    raise
                self._store_fresh_cache()
                self._finish()
                ending = "finished" if self.view.finished() else "not finished"
            finally:
                try:
                    if ending != "error" or not isinstance(
                        sys.exc_info()[1], LeaseLost | ConcurrencyError
                    ):
                        self._close_session(ending)
                    self.record.flush_logs()
                    self.journal.stop_committer()
                    self.journal.flush()
                finally:
                    self.journal.stop_committer()
                    if self.executor is not None:
                        self.executor.shutdown()
                    self._release_lease()
                    restore()
        except Interrupt as exc:
            raise exc.original from None
        return returned_state(self.graph, self.view)

    def _acquire_lease(self) -> Lease | None:
        """Take the run's lease; return the lease record it replaced, if any (when the
        previous driver was last known alive: its last renewal)."""
        r = self.runner
        run_id = self.view.run_id
        previous = self.store.get_lease(run_id)
        now = now_ns()
        try:
            lease = self.store.acquire_lease(run_id, owner=new_owner(), ttl=r.lease_ttl, now=now)
        except LeaseHeld:
            held = self.store.get_lease(run_id)
            if held is None or not holder_is_dead(held.owner):
                raise
            # The holder ran on this host and its process is gone: its lease can only
            # lapse, so take the run over now instead of waiting for the expiry.
            lease = self.store.acquire_lease(
                run_id, owner=new_owner(), ttl=r.lease_ttl, now=max(now, held.expires + 1)
            )
            # taken "after" the old expiry; bring its own expiry back to now + ttl
            lease = self.store.renew_lease(lease, ttl=r.lease_ttl, now=now)
            self.took_over_from = held.owner
            previous = held
        self.lease = lease
        self.journal.lease = lease
        self.lease_keeper = LeaseKeeper(self.store, lease, r.lease_ttl, r.lease_renew)
        return previous

    def _catch_up(self) -> None:
        """Fold what the log gained since the view was read (now that no other driver
        can write to it), and continue the journal from its real head."""
        view = self.view
        if self.store.head(view.run_id) > view.head:
            view.apply_rows(self.store.scan(view.run_id, after=view.head))
            last = self.store.read(view.run_id, after=view.head - 1, limit=1)
            view.last_event = last[0] if last else view.last_event
            self.may_lack_results = True
        if self.journal.head != view.head:
            self.journal = Journal(
                self.store,
                view.run_id,
                head=view.head,
                last_event=view.last_event,
                lease=self.lease,
                max_events=self.runner.group_events,
                max_delay=self.runner.group_delay,
            )
            self.record.journal = self.journal

    # -- driver sessions ----------------------------------------------------------------

    def _open_session(self, why: str, lost: LostSession | None) -> None:
        """Log who drives the run from now on, and why (``run``, ``resume``, ``takeover``)."""
        assert self.lease is not None
        if lost is not None:
            self.record.note(
                "session-lost",
                f"the driver {lost.owner} stopped without ending its session; last known "
                f"alive at {iso_ns(lost.last_alive)}",
                {"owner": lost.owner, "last_alive": lost.last_alive},
            )
        self.session = self.lease.owner
        self.record.note(
            "session-start",
            f"driven by {self.lease.owner} ({why}), lease epoch {self.lease.epoch}",
            {
                "owner": self.lease.owner,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "epoch": self.lease.epoch,
                "version": _version(),
                "why": why,
                "lease_ttl": self.runner.lease_ttl,
            },
        )

    def _close_session(self, ending: str) -> None:
        if self.session is None:
            return
        owner, self.session = self.session, None
        self.record.flush_logs()
        self.record.note(
            "session-end",
            f"{owner} ended its session: {ending}",
            {"owner": owner, "reason": ending},
        )

    def _lost_session(self, previous: Lease | None) -> LostSession | None:
        """The last driver session, if it never ended (a crash), with when it was last
        known alive: its last event, or its lease's last renewal if later."""
        view = self.view
        last = open_session(view)
        if last is None:
            if not any(
                isinstance(entity_run(view, n, i).state, Running | Looped)
                for n, i in all_entities(view)
            ):
                return None
            owner, ttl = "an earlier driver", None  # a log from before sessions were logged
        else:
            owner, ttl = last
        alive = view.last_event.ts if view.last_event is not None else 0
        if previous is not None and previous.owner == owner and ttl is not None:
            alive = max(alive, min(previous.expires - int(float(ttl) * 1e9), now_ns()))
        return LostSession(owner, alive)

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
        if self.known_secrets:
            start = RunStarted(
                start.flow_name, start.graph, self.record.scrub(start.parameters), start.parent_run
            )
        ts = now_ns()
        event = self.journal.add(start, ts)
        self.view.apply(event)
        self.record.flow(Running("Running flow."), ts)
        self.may_lack_results = bool(reuse)
        self.record.carry_out(seed(self.graph, initial, reuse))
        for node in range(len(self.graph.nodes)):
            self.candidates[(node, None)] = None

    def _resume_prelude(
        self,
        approve: Sequence[int],
        code: Mapping[str, str],
        record: Mapping[str, Any] | None,
        lost: LostSession | None,
    ) -> None:
        ts = now_ns()
        view = self.view
        if record is not None and view.graph.get("fingerprint") != record.get("fingerprint"):
            # resumed with allow_changed: the log records the new graph, and the fold
            # (here and in every later replay) realigns the run's tasks to it by key
            from statecore.plans import describe_changes

            self.record.note(
                "graph-changed",
                "resumed with a changed flow: " + describe_changes(view.graph, record),
                {"graph": dict(record)},
            )
        changed = [k for k, h in code.items() if view.graph.get("code", {}).get(k) not in (None, h)]
        if changed:
            self.record.note(
                "code-changed",
                "task code changed since the run started: " + ", ".join(changed),
                {"tasks": changed},
            )
        if isinstance(view.flow_state, Pending):
            self.record.flow(Running("Running flow."), ts)
        # the attempts a crashed driver left open end when it was last known alive
        self.record.carry_out(interrupt(view, ended_at=lost.last_alive if lost is not None else ts))
        self.record.carry_out(approve_paused(view, approve))
        for entity in all_entities(view):
            self.candidates[entity] = None

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
        self.candidates.clear()
        self.waits.clear()
        self.record.carry_out(cancel(self.view))
        self.candidates.clear()

    def _loop(self) -> None:
        view = self.view
        graph = self.graph
        retry_now = not self.runner.single_pass
        while True:
            self._check_lease()
            if self._cancel_requested():
                while self.in_flight:
                    self._collect(0.5)
                self._cancel_unstarted()
                return
            if self.candidates:
                batch = list(self.candidates)
                self.candidates.clear()
                now = now_ns()
                decision = decide(
                    graph, view, now, batch, cache=self.cache.candidates, retry_now=retry_now
                )
                self.record.carry_out(decision.set_states, now)
                for wake in decision.wake:
                    heapq.heappush(self.waits, wake)
                if self.may_retry:
                    retries = {
                        (rt.node, rt.index, rt.attempt)
                        for rt in decision.run
                        if type(entity_run(view, rt.node, rt.index).state) is Retrying
                    } - self.revisited
                    if retries:
                        # one pass per retry: the same retry, held back for an upstream
                        # that ran again, does not start another pass
                        self.revisited |= retries
                        self._revisit_cached(now)
                # a change above may have sent an upstream back to Pending (an invalid
                # cache): a task waiting on it again is decided when it finishes anew
                runs = [
                    rt for rt in decision.run if rt.index is not None or not self.blockers[rt.node]
                ]
                if runs:
                    self._start(runs)
                if self.candidates:
                    continue
            if self.redispatch:
                runs, self.redispatch = self.redispatch, []
                self._dispatch(runs)
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
            self.record.flush_logs()
            self.journal.flush()
            time.sleep(min(delay, max(self.runner.lease_renew / 2, 0.05)))
        now = now_ns()
        while self.waits and self.waits[0][0] <= now:
            _, entity = heapq.heappop(self.waits)
            self.candidates[entity] = None

    def _revisit_cached(self, now: int) -> None:
        """Prefect 1's ``flow.run`` makes another pass over every task for a retry, and
        checks each Cached task's cache again on it: one no longer valid goes back to
        Pending and runs again, before the tasks downstream of it (they wait for it)."""
        view = self.view
        cached = [e for e in all_entities(view) if type(entity_run(view, *e).state) is Cached]
        if not cached:
            return
        again = decide(self.graph, view, now, cached, cache=self.cache.candidates)
        self.record.carry_out(again.set_states, now)

    # -- running task bodies ------------------------------------------------------------

    def _start(self, runs: list[RunTask]) -> None:
        started: list[RunTask] = []
        single_pass = self.runner.single_pass
        for rt in runs:
            if single_pass:
                if (rt.node, rt.index) in self.attempted:
                    continue  # e.g. ENDRUN(Pending()): one pass runs a task once
                self.attempted.add((rt.node, rt.index))
            # only a resumed run or a rerun starts from results that were never stored
            if self.may_lack_results and any(v is NOT_PERSISTED for v in rt.inputs.values()):
                try:
                    rt = self._rehydrate(rt)
                except StatecoreError as exc:
                    self.record.task(rt.node, rt.index, Failed(str(exc)), rt.attempt, now_ns())
                    continue
            state = self.record.task(
                rt.node, rt.index, Running("Starting task run."), rt.attempt, now_ns()
            )
            if isinstance(state, Running):
                started.append(rt)
        if started:
            self._dispatch(started)

    def _dispatch(self, runs: list[RunTask]) -> None:
        """Run bodies: inline when alone (local runner), else on the executor, handed
        out in batches; each outcome comes back on its own (see :meth:`_collect`)."""
        runner = self.runner
        if runner.inline_when_alone and (
            (len(runs) == 1 and not self.in_flight) or runner.max_workers == 1
        ):
            journal = self.journal
            for rt in runs:
                self.inline = rt
                journal.leave()  # the committer keeps the window while the body runs
                try:
                    outcome = self.bodies.execute(rt)
                finally:
                    journal.come_back()
                self.inline = None
                self._settle(rt, outcome)
            return
        remote: list[tuple[int, Attempt]] = []
        for rt in runs:
            node = self.graph.nodes[rt.node]
            # parameters and secrets read the driver's own state: they run here
            if node.is_parameter or node.is_secret:
                self._settle(rt, self.bodies.execute(rt))
            else:
                self.tokens += 1
                self.in_flight[self.tokens] = rt
                remote.append((self.tokens, self.bodies.attempt(rt)))
        if not remote:
            return
        if self.executor is None:
            self.executor = runner.make_executor(self.logger, self.bodies.resolve_secret)
        # Batches amortise the executor's hand-off over many short tasks; one batch per
        # worker keeps every worker busy when the bodies are long.
        size = max(1, -(-len(remote) // self.executor.workers))
        for i in range(0, len(remote), size):
            self.executor.submit(remote[i : i + size])

    def _collect(self, timeout: float | None = None) -> None:
        """Settle the attempts that have ended, each as it ends; wakes at least every
        group window to commit."""
        assert self.executor is not None
        if timeout is None:
            timeout = self.runner.group_delay if self.journal.buffer else 0.5
        done = self.executor.completed(timeout)
        if not done:
            self.record.flush_logs()
            self.journal.flush()
            return
        in_flight = self.in_flight
        for token, outcome, lines in done:
            rt = in_flight.pop(token, None)
            if lines:
                self.pending_logs.extend(lines)
            if rt is None:
                continue  # logged as interrupted already
            if isinstance(outcome[0], Interrupt):
                self.in_flight[token] = rt  # still unfinished: logged as interrupted
                outcome[0].owner = rt
                raise outcome[0]
            self._settle(rt, outcome)

    def _interrupted(self, exc: BaseException) -> None:
        """Ctrl-C, SIGTERM or an interrupt from a body: log every outcome that exists,
        then every attempt still running as interrupted, so a resume runs only those."""
        with contextlib.suppress(Exception):
            if self.executor is not None and self.in_flight:
                for token, outcome, lines in self.executor.completed(0):
                    rt = self.in_flight.pop(token, None)
                    self.pending_logs.extend(lines)
                    if rt is not None and not isinstance(outcome[0], Interrupt):
                        self._settle(rt, outcome)
        original = exc.original if isinstance(exc, Interrupt) else exc
        now = now_ns()
        open_attempts = list(self.in_flight.values())
        self.in_flight.clear()
        body: RunTask | None = exc.owner if isinstance(exc, Interrupt) else None
        if self.inline is not None:
            open_attempts.append(self.inline)
            body = body or self.inline
            self.inline = None
        reason = type(original).__name__
        for rt in open_attempts:
            run = entity_run(self.view, rt.node, rt.index)
            if isinstance(run.state, Running):
                timing: dict[str, int] = {"ended_at": now}
                if rt is body and isinstance(exc, Interrupt) and exc.started:
                    timing["started_at"] = exc.started
                self.record.task(
                    rt.node,
                    rt.index,
                    Pending(
                        f"Interrupted: attempt {rt.attempt} was stopped by {reason} "
                        "before it finished"
                    ),
                    rt.attempt,
                    now,
                    handlers=False,
                    timing=timing,
                )

    def _holds_secret(self, value: Any) -> bool:
        return bool(self.known_secrets) and self.record.scrub(value) is not value

    def _logged_slot(self) -> int | None:
        """The run's schedule slot from its ``scheduled`` note, else when it started."""
        found = self.view.started
        for _, note in self.view.notes:
            if note.code == "scheduled" and note.data and "start_time" in note.data:
                found = int(note.data["start_time"])
        return found

    def _settle(self, rt: RunTask, outcome: Outcome) -> None:
        """Turn an attempt's outcome into states; a LOOP queues the next iteration."""
        node = self.graph.nodes[rt.node]
        exc, value, body_start, body_end = outcome
        timing = {"started_at": body_start, "ended_at": body_end}
        state, ended = outcome_state(exc, value, rt.loop_count + 1)
        now = now_ns()
        if isinstance(state, Looped):
            looped = self.record.task(rt.node, rt.index, state, rt.attempt, now, timing=timing)
            if not isinstance(looped, Looped):
                return
            restarted = self.record.task(
                rt.node, rt.index, loop_restart(looped), rt.attempt, now_ns()
            )
            if isinstance(restarted, Running):
                self.redispatch.append(
                    RunTask(
                        rt.node,
                        rt.index,
                        rt.inputs,
                        rt.attempt,
                        rt.resume,
                        state.loop_count,
                        state.result,
                    )
                )
            return

        params = self.view.parameters
        final = settle(
            node,
            state,
            attempt=rt.attempt,
            now=now,
            inputs=rt.inputs,
            parameters=params,
            ended_run=ended,
        )
        handled = False
        if final is not state and node.has_handlers:
            # Prefect 1's handlers see the run's state, then the retry or the cache step:
            # Running -> Failed -> Retrying, Running -> Success -> Cached. The log keeps
            # one event, with the state the whole chain ends in.
            running = entity_run(self.view, rt.node, rt.index).state
            first = self.record.task_handlers(rt.node, running, state)
            final = settle(
                node, first, attempt=rt.attempt, now=now, inputs=rt.inputs, parameters=params
            )
            if final is not first:
                final = self.record.task_handlers(rt.node, first, final)
            handled = True
        if not node.checkpoint or node.is_secret:
            self.values[(rt.node, rt.index)] = final.result
        self.record.task(
            rt.node, rt.index, final, rt.attempt, now, handlers=not handled, timing=timing
        )
        if isinstance(final, Cached) and not isinstance(state, Cached):
            self.cache.add(rt.node, rt.index, final)

    def _store_fresh_cache(self) -> None:
        for key in self.cache.write():
            self.record.note("cache-skipped", f"{key}: result not cached, it holds a secret", None)

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
        node = self.graph.nodes[node_i]
        upstream = upstream_states(self.graph, self.view, node, None) or {}
        inputs = task_inputs(node, upstream)
        for inp in node.inputs:
            if inp.key is not None and inputs.get(inp.key) is NOT_PERSISTED:
                inputs[inp.key] = self._recompute(inp.upstream)
        rt = RunTask(node_i, None, inputs, 1)
        self.record.note(
            "rehydrate", f"re-ran {node.key} to recompute a result that was not stored", None
        )
        exc, value, _, _ = self.bodies.execute(rt)
        if exc is not None:
            raise StatecoreError(
                f"could not recompute the unstored result of {node.key}: {exc!r}"
            ) from exc
        self.values[key] = value
        return value

    # -- transitions --------------------------------------------------------------------

    def _init_blockers(self) -> None:
        """Count, per task, the upstream tasks it still waits for (see
        :func:`~statecore.decide.blocker_counts`)."""
        self.needs_complete, self.blockers = blocker_counts(self.graph, self.view)

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
                    # a mapped task already expanded waited on an upstream that ran again
                    # (an invalid cache): its unfinished children are decided anew
                    for j, child in enumerate(self.view.children.get(d, ())):
                        if not child.state.is_finished():
                            self.candidates[(d, j)] = None

    def _after(self, node_i: int, index: int | None, old: State, new: State) -> None:
        """Queue the tasks whose inputs this change may have completed."""
        if not isinstance(new, Finished) or isinstance(new, Looped):
            if isinstance(new, Pending):
                self.candidates[(node_i, index)] = None
                if type(old) is Cached and index is None and self.blockers:
                    # an invalid cache: the task will run again, its downstream waits
                    for d in self.graph.nodes[node_i].downstream:
                        self.blockers[d] += 1
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

    def _finish(self) -> None:
        if self.cancelled:
            self.record.flow(Cancelled("Cancelled by request."), now_ns())
            return
        state = final_state(self.graph, self.view)
        if state.is_finished():
            self.record.flow(state, now_ns())
        else:
            self.journal.set_meta(self.record.meta())
