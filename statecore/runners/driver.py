"""The driver: one run's loop of fold -> decide -> execute -> append.

One :class:`Driver` drives one run. Its :class:`~statecore.runners.session.DriverSession`
holds the run's lease; the loop asks :func:`~statecore.decide.decide` what to do for the
entities the :class:`~statecore.readiness.Frontier` queued, runs task bodies inline or on
its runner's executor, turns each outcome into a state with
:func:`~statecore.decide.settle`, and has the :class:`~statecore.runners.recorder.Recorder`
write every change (handlers, the machine's check, scrubbing, the append through the
:class:`~statecore.runners.journal.Journal`, and the fold of the change into the live
:class:`~statecore.fold.RunView`, exactly as replay folds it).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from itertools import repeat
from typing import Any

from statecore.backends.base import Store
from statecore.decide import (
    RunTask,
    all_entities,
    cancel,
    decidable,
    decide,
    entity_run,
    entity_runs,
    final_state,
    loop_restart,
    outcome_state,
    seed,
    settle,
    with_result,
)
from statecore.errors import ConcurrencyError, LeaseHeld, LeaseLost, StatecoreError
from statecore.events import LogRecord, RunStarted
from statecore.fold import RunView, TaskStates
from statecore.graph import Graph
from statecore.readiness import Frontier
from statecore.runners.bodies import Bodies
from statecore.runners.dispatch import Dispatcher
from statecore.runners.execution import Interrupt, Outcome, RunLogger, Runner, options_of
from statecore.runners.journal import Journal
from statecore.runners.leases import now_ns
from statecore.runners.preludes import begin, logged_slot, resume_prelude
from statecore.runners.recorder import Recorder
from statecore.runners.rehydration import Unstored
from statecore.runners.result_cache import ResultCache
from statecore.runners.run_logging import RunLogging
from statecore.runners.session import DriverSession, terminate_as_exit
from statecore.states import (
    NOT_PERSISTED,
    Cached,
    Cancelled,
    Failed,
    Looped,
    Retrying,
    Running,
    State,
)

__all__ = ["Driver", "Runner", "returned_state"]


def returned_state(graph: Graph, view: RunView) -> State:
    """The flow's state as ``flow.run`` returns it: ``run_id`` and ``result`` set."""
    state = with_result(view.flow_state, view.flow_state.result)
    state.run_id = view.run_id
    state.result = TaskStates(view, graph.index_of)
    return state


class Driver:
    """Drives one run to the end (or to a pause) through the one loop."""

    def __init__(
        self,
        graph: Graph,
        store: Store,
        view: RunView,
        runner: Runner,
        *,
        secrets: Mapping[str, Any] | None = None,
    ) -> None:
        self.graph = graph
        self.store = store
        self.view = view
        view.track = False
        self.runner = runner
        self.options = options = options_of(runner)
        self.session = DriverSession(store, view.run_id, options)
        secrets = dict(secrets or {})
        # every value handed in is known to the run, so it is scrubbed from the first event
        self.known_secrets: dict[str, str] = {
            name: value for name, value in secrets.items() if isinstance(value, str) and value
        }
        self.frontier = Frontier(graph, view)
        self.pending_logs: deque[LogRecord] = deque()
        self.logger = RunLogger(self.pending_logs.append)
        self.record = Recorder(
            graph, view, self._journal(), self.known_secrets, self.pending_logs, self.frontier.after
        )
        self.bodies = Bodies(graph, view, secrets, self.known_secrets, self.logger)
        self.record.resolve_secret = self.bodies.resolve_secret
        self.record.logger = self.logger
        self.unstored = Unstored(graph, view, self.bodies, self.record)
        self.cache = ResultCache(store, graph, self.record.holds_secret)
        self.logging = RunLogging(graph, self.record.scrub)
        #: entities that ran in this call (a single pass runs each at most once)
        self.attempted: set[tuple[int, int | None]] = set()
        self.dispatch = Dispatcher(
            graph,
            view,
            runner,
            options,
            self.bodies,
            self.record,
            (self.logger, self.pending_logs),
            self._settle,
            self.session.check_start,
        )
        #: LOOP iterations to start again
        self.redispatch: list[RunTask] = []
        #: the retries (node, index, attempt) that made a pass over the Cached tasks
        self.revisited: set[tuple[int, int | None, int]] = set()
        #: whether a retry can make Prefect 1 look at Cached tasks again (see _loop)
        self.may_retry = not options.single_pass and any(n.max_retries for n in graph.nodes)
        self.may_lack_results = view.head > 0
        self.cancelled = False
        self._next_cancel_check = 0.0

    def _journal(self) -> Journal:
        view = self.view
        return Journal(
            self.store,
            view.run_id,
            head=view.head,
            last_event=view.last_event,
            lease=self.session.lease,
            max_events=self.options.group_events,
            max_delay=self.options.group_delay,
        )

    # -- the run's call ---------------------------------------------------------------

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
        session = self.session
        previous = session.acquire()
        ending = "error"
        restore = terminate_as_exit()
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
                self.record.journal.start_committer()
                self.bodies.learn_secrets()
                if start is not None:
                    if self.known_secrets:
                        start = replace(start, parameters=self.record.scrub(start.parameters))
                    self.may_lack_results = bool(reuse)
                    begin(self.record, start, seed(self.graph, initial or {}, reuse or {}))
                    self.frontier.add_all(zip(range(len(self.graph.nodes)), repeat(None)))
                    session.open(self.record, "run", None)
                    self.logging.flow_started("run")
                    if scheduled is not None:
                        self.record.note(
                            "scheduled", "run for a schedule slot", {"start_time": scheduled}
                        )
                else:
                    lost = session.lost(self.view, previous)
                    why = "takeover" if session.took_over_from is not None else "resume"
                    session.open(self.record, why, lost)
                    self.logging.flow_started(why)
                    resume_prelude(self.record, approve, code or {}, record, lost)
                    # a resume is a new flow.run, a pass of its own that checks the
                    # Cached tasks as it begins (decidable offers them): the retries it
                    # finds run in it and start no other (see _revisit_cached)
                    self.revisited |= {
                        (node, index, run.attempt)
                        for node, index, run in entity_runs(self.view)
                        if type(run.state) is Retrying
                    }
                    self.frontier.add_all(decidable(self.view))
                self.bodies.scheduled_start = logged_slot(self.view)
                self.cache.load(now_ns())
                self.frontier.count()
                try:
                    self._loop()
                except (Interrupt, KeyboardInterrupt, SystemExit) as exc:
                    ending = "interrupted"
                    self.dispatch.interrupted(exc)
                    raise
                for key in self.cache.write():
                    self.record.note(
                        "cache-skipped", f"{key}: result not cached, it holds a secret", None
                    )
                self._finish()
                ending = "finished" if self.view.finished() else "not finished"
            finally:
                journal = self.record.journal
                try:
                    fenced = isinstance(sys.exc_info()[1], LeaseLost | ConcurrencyError)
                    if ending != "error" or not fenced:
                        session.close(self.record, ending)
                    self.record.flush_logs()
                    journal.stop_committer()
                    journal.flush()
                finally:
                    journal.stop_committer()
                    self.dispatch.shutdown()
                    session.release()
                    restore()
        except Interrupt as exc:
            raise exc.original from None
        return returned_state(self.graph, self.view)

    def _catch_up(self) -> None:
        """Fold what the log gained since the view was read (now that no other driver
        can write to it), and continue the journal from its real head."""
        view = self.view
        if self.store.head(view.run_id) > view.head:
            view.apply_rows(self.store.scan(view.run_id, after=view.head))
            last = self.store.read(view.run_id, after=view.head - 1, limit=1)
            view.last_event = last[0] if last else view.last_event
            self.may_lack_results = True
        self.record.journal = self._journal()

    # -- the loop -------------------------------------------------------------------------

    def _loop(self) -> None:
        view, graph, frontier = self.view, self.graph, self.frontier
        retry_now = not self.options.single_pass
        while True:
            self.record.journal.lease = self.session.current()
            if (self.cancelled or time.monotonic() >= self._next_cancel_check) and (
                self._cancel_requested()
            ):
                while self.dispatch.in_flight:
                    self.dispatch.collect(0.5)
                frontier.clear()
                self.record.carry_out(cancel(view))
                frontier.clear()
                return
            if frontier.candidates:
                now = time.time_ns()
                decision = decide(
                    graph,
                    view,
                    now,
                    frontier.take(),
                    cache=self.cache.candidates,
                    retry_now=retry_now,
                )
                self.record.carry_out(decision.set_states, now)
                for when, entity in decision.wake:
                    frontier.wait(when, entity)
                if self.may_retry:
                    self._revisit_cached(decision.run, now)
                # a change above may have sent an upstream back to Pending (an invalid
                # cache): a task waiting on it again is decided when it finishes anew
                runs = [
                    rt
                    for rt in decision.run
                    if rt.index is not None or not frontier.blocked(rt.node)
                ]
                if runs:
                    self._start(runs)
                if frontier.candidates:
                    continue
            if self.redispatch:
                runs, self.redispatch = self.redispatch, []
                self.dispatch.run(runs)
            elif self.dispatch.in_flight:
                self.dispatch.collect()
            elif (wake_at := frontier.next_wake()) is not None:
                if self.record.journal.due():
                    self.record.journal.flush()
                delay = (wake_at - now_ns()) / 1e9
                if delay > 0:
                    self.record.flush_logs()
                    self.record.journal.flush()
                    time.sleep(min(delay, max(self.options.lease_renew / 2, 0.05)))
                frontier.wake(now_ns())
            else:
                return

    def _cancel_requested(self) -> bool:
        if self.cancelled:
            return True
        tick = time.monotonic()
        if tick < self._next_cancel_check:
            return False
        self._next_cancel_check = tick + 0.5
        self.cancelled = self.store.cancel_requested(self.view.run_id, now=now_ns())
        return self.cancelled

    def _revisit_cached(self, runs: list[RunTask], now: int) -> None:
        """Prefect 1's ``flow.run`` makes another pass over every task for a retry, and
        checks each Cached task's cache again on it: one no longer valid goes back to
        Pending and runs again, before the tasks downstream of it (they wait for it).
        A retry is named by its task and the attempt that failed."""
        view = self.view
        retries: set[tuple[int, int | None, int]] = set()
        for rt in runs:
            run = entity_run(view, rt.node, rt.index)
            if type(run.state) is Retrying:
                retries.add((rt.node, rt.index, run.attempt))
        retries -= self.revisited
        if not retries:
            return
        # one pass per retry: the same retry, held back for an upstream that ran again,
        # does not start another pass
        self.revisited |= retries
        cached = [e for e in all_entities(view) if type(entity_run(view, *e).state) is Cached]
        if cached:
            again = decide(self.graph, view, now, cached, cache=self.cache.candidates)
            self.record.carry_out(again.set_states, now)

    # -- running task bodies ------------------------------------------------------------

    def _start(self, runs: list[RunTask]) -> None:
        started: list[RunTask] = []
        single_pass = self.options.single_pass
        logging_on = self.logging.tasks_on
        for rt in runs:
            if single_pass:
                if (rt.node, rt.index) in self.attempted:
                    continue  # e.g. ENDRUN(Pending()): one pass runs a task once
                self.attempted.add((rt.node, rt.index))
            # only a resumed run or a rerun starts from results that were never stored
            if self.may_lack_results and any(v is NOT_PERSISTED for v in rt.inputs.values()):
                try:
                    rt = self.unstored.rehydrate(rt)
                except StatecoreError as exc:
                    self.record.task(rt.node, rt.index, Failed(str(exc)), rt.attempt, now_ns())
                    continue
            state = self.record.task(
                rt.node, rt.index, Running("Starting task run."), rt.attempt, time.time_ns()
            )
            if isinstance(state, Running):
                if logging_on:
                    self.logging.task_started(rt.node, rt.index)
                started.append(rt)
        if started:
            self.dispatch.run(started)

    def _settle(self, rt: RunTask, outcome: Outcome) -> None:
        """Turn an attempt's outcome into states; a LOOP queues the next iteration."""
        node = self.graph.nodes[rt.node]
        exc, value, body_start, body_end = outcome
        timing = {"started_at": body_start, "ended_at": body_end}
        state, ended = outcome_state(exc, value, rt.loop_count + 1)
        now = time.time_ns()
        record = self.record
        if isinstance(state, Looped):
            looped = record.task(rt.node, rt.index, state, rt.attempt, now, timing=timing)
            if not isinstance(looped, Looped):
                return
            # each iteration is a new task run, as in Prefect 1: task_run_count starts
            # at 1 again and the iteration has its own retries
            restarted = record.task(rt.node, rt.index, loop_restart(looped), 1, now_ns())
            if isinstance(restarted, Running):
                self.redispatch.append(
                    RunTask(
                        rt.node,
                        rt.index,
                        rt.inputs,
                        1,
                        rt.resume,
                        state.loop_count,
                        state.result,
                    )
                )
            return
        params = self.view.parameters
        handled = node.has_handlers
        if handled:
            # Prefect 1's handlers see the run's state, then the retry or the cache step
            # settles what they returned: Running -> Failed -> Retrying, Running ->
            # Success -> Cached, and a handler raising FAIL on Running -> Success is
            # retried too. The log keeps one event, the state the whole chain ends in.
            running = entity_run(self.view, rt.node, rt.index).state
            first = record.task_handlers(rt.node, running, state, rt.index)
            final = settle(
                node,
                first,
                attempt=rt.attempt,
                now=now,
                inputs=rt.inputs,
                parameters=params,
                ended_run=ended and first is state,
            )
            if final is not first:
                final = record.task_handlers(rt.node, first, final, rt.index)
        else:
            final = settle(
                node,
                state,
                attempt=rt.attempt,
                now=now,
                inputs=rt.inputs,
                parameters=params,
                ended_run=ended,
            )
        if not node.checkpoint or node.is_secret:
            self.unstored.keep(rt.node, rt.index, final.result)
        final = record.task(
            rt.node, rt.index, final, rt.attempt, now, handlers=not handled, timing=timing
        )
        if self.logging.tasks_on:
            self.logging.task_finished(rt.node, rt.index, final, exc)
        if isinstance(final, Cached) and not isinstance(state, Cached):
            self.cache.add(rt.node, rt.index, final)

    def _finish(self) -> None:
        if self.cancelled:
            state: State = Cancelled("Cancelled by request.")
        else:
            state = final_state(self.graph, self.view)
        if state.is_finished():
            self.record.flow(state, now_ns())
        else:
            self.record.journal.set_meta(self.record.meta())
        self.logging.flow_finished(self.view.flow_state if state.is_finished() else state)
