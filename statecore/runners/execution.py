"""Running task bodies: one attempt, with its context, timeout and log lines.

:func:`run_attempt` is all a worker needs. It runs in the driver's thread, in a thread
pool (:class:`ThreadExecutor`) or on a ``dask.distributed`` worker (see
:mod:`statecore.runners.dask`); only the driver, which holds the lease, turns outcomes
into events.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

from statecore.context import (
    reset_context,
    reset_secret_resolver,
    set_context,
    set_secret_resolver,
)
from statecore.errors import StatecoreError
from statecore.events import LogRecord
from statecore.signals import TaskTimeoutSignal
from statecore.tasks import Task

__all__ = [
    "Attempt",
    "Done",
    "Executor",
    "Interrupt",
    "Outcome",
    "RunLogger",
    "RunOptions",
    "Runner",
    "options_of",
    "ThreadExecutor",
    "drain",
    "run_attempt",
    "run_body",
    "run_remote",
]

#: what a body did: (the exception or signal it raised, or None; its return value; when
#: the body started and ended, UTC ns, read where it ran)
Outcome = tuple[BaseException | None, Any, int, int]
#: an attempt's outcome as an executor delivers it: (the driver's token for the attempt,
#: its outcome, the log lines it wrote that were not yet delivered)
Done = tuple[int, Outcome, Sequence[LogRecord]]


class Attempt(NamedTuple):
    """Everything needed to run one attempt of a task body (picklable for remote workers;
    a named tuple: one is made per attempt, and a frozen dataclass costs three times more).

    Attributes:
        task: the task.
        inputs: keyword arguments of ``task.run``.
        context: the ``statecore.context`` values (the logger is added where it runs).
        timeout: seconds, or None.
    """

    task: Task
    inputs: Mapping[str, Any]
    context: Mapping[str, Any]
    timeout: float | None


class Interrupt(BaseException):
    """Carries a KeyboardInterrupt/SystemExit from a body to the driver, which re-raises it."""

    def __init__(self, original: BaseException, started: int = 0) -> None:
        super().__init__(original)
        self.original = original
        #: when the interrupted body started (UTC ns), 0 if unknown
        self.started = started
        #: the driver's record of the attempt it came from (set by the driver)
        self.owner: Any = None


class RunLogger:
    """``context['logger']``: each line becomes a ``log`` event of the run.

    Lines longer than ``MAX_CHARS`` are cut, so one chatty task cannot bloat the log.
    """

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
        """Log at DEBUG."""
        self._log("DEBUG", msg, *args)

    def info(self, msg: object, *args: object) -> None:
        """Log at INFO."""
        self._log("INFO", msg, *args)

    def warning(self, msg: object, *args: object) -> None:
        """Log at WARNING."""
        self._log("WARNING", msg, *args)

    def error(self, msg: object, *args: object) -> None:
        """Log at ERROR."""
        self._log("ERROR", msg, *args)

    def exception(self, msg: object, *args: object) -> None:
        """Log at ERROR (as :meth:`logging.Logger.exception` would)."""
        self._log("ERROR", msg, *args)


def run_attempt(
    attempt: Attempt,
    *,
    logger: RunLogger,
    resolve_secret: Callable[[str], Any] | None = None,
) -> Outcome:
    """Run one attempt of a body with its context; never raises but :class:`Interrupt`."""
    values = dict(attempt.context)
    values["logger"] = logger
    return run_body(attempt.task, attempt.inputs, values, attempt.timeout, resolve_secret)


def run_body(
    task: Task,
    inputs: Mapping[str, Any],
    context: Mapping[str, Any],
    timeout: float | None,
    resolve_secret: Callable[[str], Any] | None = None,
) -> Outcome:
    """Run ``task.run(**inputs)`` with ``context`` (logger included) as
    ``statecore.context``, timing it here, where it runs; never raises but
    :class:`Interrupt` (which carries the body's start)."""
    token = set_context(context)
    secret_token = set_secret_resolver(resolve_secret)
    started = time.time_ns()
    try:
        if timeout is not None:
            return _run_with_timeout(task.run, inputs, timeout)
        try:
            value = task.run(**inputs)
        except (KeyboardInterrupt, SystemExit) as exc:
            raise Interrupt(exc, started) from exc
        except BaseException as exc:
            return exc, None, started, time.time_ns()
        return None, value, started, time.time_ns()
    finally:
        reset_context(token)
        reset_secret_resolver(secret_token)


def run_remote(attempt: Attempt) -> tuple[Outcome, list[LogRecord]]:
    """Run one attempt on a remote worker: its outcome, with the log lines it wrote."""
    lines: list[LogRecord] = []
    try:
        outcome = run_attempt(attempt, logger=RunLogger(lines.append))
    except Interrupt as exc:
        # a worker must not die of it: the driver re-raises it
        outcome = (exc, None, exc.started, time.time_ns())
    return outcome, lines


def _run_with_timeout(fn: Callable[..., Any], inputs: Mapping[str, Any], timeout: float) -> Outcome:
    box: list[Outcome] = []
    ctx = contextvars.copy_context()

    def target() -> None:
        started = time.time_ns()
        try:
            value = ctx.run(fn, **inputs)
        except BaseException as exc:
            box.append((exc, None, started, time.time_ns()))
            return
        box.append((None, value, started, time.time_ns()))

    begun = time.time_ns()
    thread = threading.Thread(target=target, name="statecore-timeout", daemon=True)
    thread.start()
    thread.join(timeout)
    if not box:
        # A Python thread cannot be killed: the attempt is recorded TimedOut now and
        # whatever it does later is discarded (its box is never read again).
        return TaskTimeoutSignal("Execution timed out."), None, begun, time.time_ns()
    outcome = box[0]
    if isinstance(outcome[0], KeyboardInterrupt | SystemExit):
        raise Interrupt(outcome[0], outcome[2])
    return outcome


class Executor(Protocol):
    """Where attempts run. Dispatch may be batched; outcomes come back one by one, each
    as soon as its body has ended, so none waits on its siblings to reach the log."""

    #: how many attempts can run at once
    workers: int

    def submit(self, batch: Sequence[tuple[int, Attempt]]) -> None:
        """Start attempts, each with the driver's token for it."""

    def completed(self, timeout: float) -> list[Done]:
        """The attempts that have ended since the last call: waits up to ``timeout``
        seconds for the first, then takes whatever else has ended, without waiting."""

    def shutdown(self) -> None:
        """Stop; do not wait for running attempts."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How a runner drives a run, whatever executes its bodies.

    Attributes:
        single_pass: visit each task once, like one pass of Prefect's FlowRunner: retries
            are left Retrying for a later ``resume``.
        group_events: group-commit window, in events.
        group_delay: group-commit window, in seconds.
        lease_ttl: seconds a lease lives without renewal.
        lease_renew: seconds between renewals.
        inline_when_alone: run a lone ready task in the driver's thread instead of on the
            executor (no hand-off); a runner whose bodies must not run in the driver's
            process says False.
    """

    single_pass: bool = False
    group_events: int = 512
    group_delay: float = 0.02
    lease_ttl: float = 15.0
    lease_renew: float = 5.0
    inline_when_alone: bool = True

    def __post_init__(self) -> None:
        if self.group_events < 1:
            raise ValueError("group_events must be at least 1")
        if self.group_delay < 0:
            raise ValueError("group_delay must not be negative")
        if self.lease_ttl <= 0 or self.lease_renew <= 0:
            raise ValueError("lease_ttl and lease_renew must be positive")


class Runner(Protocol):
    """What the driver needs of a runner (``LocalRunner``, ``DaskRunner``, your own): its
    options, and a factory for the executor that runs one run's task bodies."""

    @property
    def options(self) -> RunOptions:
        """How the run is driven."""

    def make_executor(self, logger: RunLogger, resolve_secret: Callable[[str], Any]) -> Executor:
        """The executor for one run's task bodies (shut down when the run's call ends)."""


def options_of(runner: Runner) -> RunOptions:
    """A runner's options; a runner from before :class:`RunOptions` (plain attributes of
    the same names) is read the old way."""
    options = getattr(runner, "options", None)
    if isinstance(options, RunOptions):
        return options
    return RunOptions(
        single_pass=bool(getattr(runner, "single_pass", False)),
        group_events=int(getattr(runner, "group_events", 512)),
        group_delay=float(getattr(runner, "group_delay", 0.02)),
        lease_ttl=float(getattr(runner, "lease_ttl", 15.0)),
        lease_renew=float(getattr(runner, "lease_renew", 5.0)),
        inline_when_alone=bool(getattr(runner, "inline_when_alone", True)),
    )


def _always() -> None:
    """The start gate of an executor no driver has gated: every body may start."""


class ThreadExecutor:
    """Attempts on this process's daemon threads; log lines go straight to the driver.

    The threads are daemons on purpose: after Ctrl-C the driver logs every unfinished
    attempt as interrupted and the process may exit without waiting for those bodies
    (a Python thread cannot be stopped; a resume runs them again).
    """

    def __init__(
        self,
        workers: int,
        logger: RunLogger,
        resolve_secret: Callable[[str], Any],
    ) -> None:
        self.workers = workers
        self._logger = logger
        self._resolve = resolve_secret
        self._todo: queue.SimpleQueue[Sequence[tuple[int, Attempt]] | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[Done] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._gate: Callable[[], None] = _always

    def gate_starts(self, gate: Callable[[], None]) -> None:
        """Call ``gate`` before each body starts: it returns when the body may start and
        raises (LeaseLost) when it must not; a batch handed out before the driver was
        frozen past its lease then starts nothing once it wakes."""
        self._gate = gate

    def _work(self) -> None:
        todo, done = self._todo, self._done
        logger, resolve = self._logger, self._resolve
        put = done.put
        while (batch := todo.get()) is not None:
            for token, attempt in batch:
                try:
                    self._gate()
                except StatecoreError as exc:
                    put((token, (Interrupt(exc), None, 0, time.time_ns()), ()))
                    break
                try:
                    outcome = run_attempt(attempt, logger=logger, resolve_secret=resolve)
                except Interrupt as exc:
                    put((token, (exc, None, exc.started, time.time_ns()), ()))
                    break
                put((token, outcome, ()))  # log lines went straight to the driver

    def submit(self, batch: Sequence[tuple[int, Attempt]]) -> None:
        if len(self._threads) < self.workers:
            thread = threading.Thread(target=self._work, name="statecore-task", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._todo.put(batch)

    def completed(self, timeout: float) -> list[Done]:
        return drain(self._done, timeout)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._todo.put(None)
        self._threads.clear()


_Item = TypeVar("_Item")


def drain(done: queue.SimpleQueue[_Item], timeout: float) -> list[_Item]:
    """Wait up to ``timeout`` seconds for one item of ``done``, then take all it holds."""
    try:
        first = done.get(timeout=timeout) if timeout > 0 else done.get_nowait()
    except queue.Empty:
        return []
    out = [first]
    while True:
        try:
            out.append(done.get_nowait())
        except queue.Empty:
            return out
