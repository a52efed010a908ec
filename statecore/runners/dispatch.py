"""Where the driver's task bodies run, and how their outcomes come back.

A :class:`Dispatcher` runs a lone ready task inline, in the driver's thread (no hand-off;
the journal's committer keeps the group window while it runs), and hands the others to
its runner's executor in batches, one per worker. Outcomes come back one by one, each as
its body ends, and go to the driver's ``settle``. On Ctrl-C, SIGTERM or an interrupt from a
body, :meth:`Dispatcher.interrupted` settles every outcome that exists and logs every
attempt still open as ``Pending("Interrupted: ...")``, so a resume runs only those.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable

from statecore.decide import RunTask, entity_run
from statecore.errors import LeaseLost
from statecore.events import LogRecord
from statecore.fold import RunView
from statecore.graph import Graph
from statecore.runners.bodies import Bodies
from statecore.runners.execution import (
    Attempt,
    Executor,
    Interrupt,
    Outcome,
    RunLogger,
    Runner,
    RunOptions,
)
from statecore.runners.leases import now_ns
from statecore.runners.recorder import Recorder
from statecore.states import Pending, Running

__all__ = ["Dispatcher"]

Settle = Callable[[RunTask, Outcome], None]


class Dispatcher:
    """Runs one run's attempts and delivers their outcomes to ``settle``."""

    def __init__(
        self,
        graph: Graph,
        view: RunView,
        runner: Runner,
        options: RunOptions,
        bodies: Bodies,
        record: Recorder,
        logs: tuple[RunLogger, deque[LogRecord]],
        settle: Settle,
        gate: Callable[[], None],
    ) -> None:
        self.graph = graph
        self.view = view
        self.runner = runner
        self.options = options
        self.bodies = bodies
        self.record = record
        self.logger, self.pending_logs = logs
        self.settle = settle
        #: returns when a body may start (the lease is valid now), raises LeaseLost if not
        self.gate = gate
        self.executor: Executor | None = None
        #: attempts on the executor, by the token they were handed out with
        self.in_flight: dict[int, RunTask] = {}
        self.tokens = 0
        #: the attempt running in the driver's own thread, if any
        self.inline: RunTask | None = None
        # with one worker every body runs inline
        self.one_worker = getattr(runner, "max_workers", 0) == 1

    def run(self, runs: list[RunTask]) -> None:
        """Start the attempts ``runs`` (logged Running already)."""
        if self.options.inline_when_alone and (
            (len(runs) == 1 and not self.in_flight) or self.one_worker
        ):
            journal = self.record.journal
            for rt in runs:
                self.inline = rt
                self.gate()
                journal.leave()  # the committer keeps the window while the body runs
                try:
                    outcome = self.bodies.execute(rt)
                finally:
                    journal.come_back()
                self.inline = None
                self.settle(rt, outcome)
            return
        remote: list[tuple[int, Attempt]] = []
        for rt in runs:
            node = self.graph.nodes[rt.node]
            # parameters and secrets read the driver's own state: they run here
            if node.is_parameter or node.is_secret:
                self.settle(rt, self.bodies.execute(rt))
            else:
                self.tokens += 1
                self.in_flight[self.tokens] = rt
                remote.append((self.tokens, self.bodies.attempt(rt)))
        if not remote:
            return
        if self.executor is None:
            self.executor = self.runner.make_executor(self.logger, self.bodies.resolve_secret)
            gate_starts = getattr(self.executor, "gate_starts", None)
            if gate_starts is not None:
                gate_starts(self.gate)
        # Batches amortise the executor's hand-off over many short tasks; one batch per
        # worker keeps every worker busy when the bodies are long.
        size = max(1, -(-len(remote) // self.executor.workers))
        for i in range(0, len(remote), size):
            self.executor.submit(remote[i : i + size])

    def collect(self, timeout: float | None = None) -> None:
        """Settle the attempts that have ended, each as it ends; wakes at least every
        group window to commit."""
        assert self.executor is not None
        journal = self.record.journal
        if timeout is None:
            timeout = journal.until_due() if journal.buffer else 0.5
        done = self.executor.completed(timeout)
        if not done:
            self.record.flush_logs()
            journal.flush()
            return
        in_flight = self.in_flight
        for token, outcome, lines in done:
            rt = in_flight.pop(token, None)
            if lines:
                self.pending_logs.extend(lines)
            if rt is None:
                continue  # logged as interrupted already
            if isinstance(outcome[0], Interrupt):
                if isinstance(outcome[0].original, LeaseLost):
                    raise outcome[0].original  # the run is another driver's now
                in_flight[token] = rt  # still unfinished: logged as interrupted
                outcome[0].owner = rt
                raise outcome[0]
            self.settle(rt, outcome)
        if journal.due():
            self.record.flush_logs()
            journal.flush()

    def interrupted(self, exc: BaseException) -> None:
        """Log every outcome that exists, then every attempt still open as interrupted."""
        with contextlib.suppress(Exception):
            if self.executor is not None and self.in_flight:
                for token, outcome, lines in self.executor.completed(0):
                    rt = self.in_flight.pop(token, None)
                    self.pending_logs.extend(lines)
                    if rt is not None and not isinstance(outcome[0], Interrupt):
                        self.settle(rt, outcome)
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
            if not isinstance(entity_run(self.view, rt.node, rt.index).state, Running):
                continue
            timing: dict[str, int] = {"ended_at": now}
            if rt is body and isinstance(exc, Interrupt) and exc.started:
                timing["started_at"] = exc.started
            message = (
                f"Interrupted: attempt {rt.attempt} was stopped by {reason} before it finished"
            )
            self.record.task(
                rt.node, rt.index, Pending(message), rt.attempt, now, handlers=False, timing=timing
            )

    def shutdown(self) -> None:
        if self.executor is not None:
            self.executor.shutdown()
