"""Running task bodies: one attempt, with its context, timeout and log lines.

:func:`run_attempt` is all a worker needs. It runs in the driver's thread, in a thread
pool (:class:`ThreadExecutor`) or on a ``dask.distributed`` worker (see
:mod:`statecore.runners.dask`); only the driver, which holds the lease, turns outcomes
into events.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol

from statecore.context import (
    reset_context,
    reset_secret_resolver,
    set_context,
    set_secret_resolver,
)
from statecore.events import LogRecord
from statecore.signals import TaskTimeoutSignal
from statecore.tasks import Task

__all__ = [
    "Attempt",
    "Executor",
    "Interrupt",
    "Outcome",
    "RunLogger",
    "ThreadExecutor",
    "run_attempt",
    "run_attempts",
    "run_body",
]

#: what a body did: (the exception or signal it raised, or None; its return value)
Outcome = tuple[BaseException | None, Any]


@dataclass(frozen=True, slots=True)
class Attempt:
    """Everything needed to run one attempt of a task body (picklable for remote workers).

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

    def __init__(self, original: BaseException) -> None:
        super().__init__(original)
        self.original = original


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
    ``statecore.context``; never raises but :class:`Interrupt`."""
    token = set_context(context)
    secret_token = set_secret_resolver(resolve_secret)
    try:
        if timeout is not None:
            return _run_with_timeout(task.run, inputs, timeout)
        try:
            return None, task.run(**inputs)
        except (KeyboardInterrupt, SystemExit) as exc:
            raise Interrupt(exc) from exc
        except BaseException as exc:
            return exc, None
    finally:
        reset_context(token)
        reset_secret_resolver(secret_token)


def run_attempts(attempts: Sequence[Attempt]) -> list[tuple[Outcome, list[LogRecord]]]:
    """Run a batch on a remote worker: outcomes with the log lines each attempt wrote."""
    out: list[tuple[Outcome, list[LogRecord]]] = []
    for attempt in attempts:
        lines: list[LogRecord] = []
        try:
            outcome = run_attempt(attempt, logger=RunLogger(lines.append))
        except Interrupt as exc:
            # a worker must not die of it: the driver re-raises it; the rest of the
            # batch does not run (its tasks stay Running in the log, as after a crash)
            out.append(((exc, None), lines))
            break
        out.append((outcome, lines))
    return out


def _run_with_timeout(fn: Callable[..., Any], inputs: Mapping[str, Any], timeout: float) -> Outcome:
    box: list[Outcome] = []
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
        return TaskTimeoutSignal("Execution timed out."), None
    exc, value = box[0]
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        raise Interrupt(exc)
    return exc, value


class Executor(Protocol):
    """Where batches of attempts run. Handles are opaque to the driver."""

    #: how many batches can run at once
    workers: int

    def submit(self, batch: Sequence[Attempt]) -> Any:
        """Start a batch; return a handle."""

    def wait(self, handles: Sequence[Any], timeout: float) -> list[Any]:
        """The handles of finished batches (possibly none after ``timeout`` seconds)."""

    def results(self, handle: Any) -> list[tuple[Outcome, list[LogRecord]]]:
        """A finished batch's outcomes, with log lines not yet delivered."""

    def shutdown(self) -> None:
        """Stop; do not wait for running batches."""


class ThreadExecutor:
    """Batches on this process's thread pool; log lines go straight to the driver."""

    def __init__(
        self,
        workers: int,
        logger: RunLogger,
        resolve_secret: Callable[[str], Any],
    ) -> None:
        self.workers = workers
        self._logger = logger
        self._resolve = resolve_secret
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="statecore-task")

    def _run(self, batch: Sequence[Attempt]) -> list[tuple[Outcome, list[LogRecord]]]:
        return [
            (run_attempt(a, logger=self._logger, resolve_secret=self._resolve), []) for a in batch
        ]

    def submit(self, batch: Sequence[Attempt]) -> Future[list[tuple[Outcome, list[LogRecord]]]]:
        return self._pool.submit(self._run, batch)

    def wait(self, handles: Sequence[Any], timeout: float) -> list[Any]:
        done, _ = wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        return list(done)

    def results(self, handle: Any) -> list[tuple[Outcome, list[LogRecord]]]:
        result: list[tuple[Outcome, list[LogRecord]]] = handle.result()
        return result

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
