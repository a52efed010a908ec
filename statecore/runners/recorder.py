"""The recorder: the one writer of a run's state changes.

Every change of a task's, a mapped child's or the flow's state goes through
:meth:`Recorder.task` or :meth:`Recorder.flow`: state handlers first (Prefect 1's
chain, after a commit so they see a durable log), then the machine's table (the only
legality check, :func:`statecore.machine.check_task`), then scrubbing of every secret
known to the run, the codec (:func:`statecore.codec.state_extra`), the journal's append,
and the fold of the very change into the live view, exactly as replay folds it. Notes and
log lines are recorded here too. The driver decides; the recorder writes.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from statecore import machine, signals
from statecore.backends.base import RunMeta
from statecore.codec import PLAIN, state_extra
from statecore.context import (
    reset_context,
    reset_secret_resolver,
    set_context,
    set_secret_resolver,
)
from statecore.decide import SetState, signal_state
from statecore.errors import SerializationError
from statecore.events import KIND_STATE, LogRecord, Note, StateChanged, encode_state_change
from statecore.fold import RunView
from statecore.graph import Graph
from statecore.runners.encryption import current_key, seal
from statecore.runners.journal import Journal
from statecore.runners.leases import now_ns
from statecore.scrubbing import holds_secret_bytes, scrub, with_message
from statecore.serialization import packb
from statecore.states import Failed, Mapped, Running, State

__all__ = ["Recorder"]

_TASK_TABLE = machine.TASK_TRANSITIONS
#: what the driver does after a task's state changed: (node, index, old, new)
OnChange = Callable[[int, int | None, State, State], None]


def _label(key: str, index: int | None) -> str:
    return key if index is None else f"{key}[{index}]"


class Recorder:
    """Writes one run's state changes, notes and log lines (see the module's text).

    Args:
        graph: the compiled flow.
        view: the live view, folded with each change.
        journal: where events go (the driver may hand it a new one, see ``journal``).
        known_secrets: every secret value known to the run, by name (shared, growing).
        pending_logs: log lines written by bodies, recorded at the next change.
        on_change: called after each task change but a start (Running), which queues
            nothing: the driver queues what may run.
    """

    def __init__(
        self,
        graph: Graph,
        view: RunView,
        journal: Journal,
        known_secrets: dict[str, str],
        pending_logs: deque[LogRecord],
        on_change: OnChange,
    ) -> None:
        self.graph = graph
        self.view = view
        self.journal = journal
        self.known_secrets = known_secrets
        self.pending_logs = pending_logs
        self.on_change = on_change
        #: STATECORE_ENCRYPTION_KEY, read once: results are sealed with it when set
        self.key = current_key()
        #: the run's secret lookup, installed while state handlers run (a notifier reads
        #: its webhook or password from ``flow.run(secrets=...)``); set by the driver
        self.resolve_secret: Callable[..., Any] | None = None
        #: ``context['logger']`` while task handlers run, so what a handler logs (a
        #: notifier that could not deliver) is a line of the run's log; set by the driver
        self.logger: Any = None

    @contextlib.contextmanager
    def _handler_context(self, node_i: int | None, index: int | None) -> Iterator[None]:
        """While state handlers run: the run's secret lookup and, as Prefect 1's handlers
        had ``prefect.context``, the run's and the task's names and the run's logger."""
        values: dict[str, Any] = {"run_id": self.view.run_id, "flow_name": self.graph.flow_name}
        if node_i is not None:
            node = self.graph.nodes[node_i]
            values.update(
                task_name=node.name,
                task_slug=node.key,
                task_full_name=node.name if index is None else f"{node.name}[{index}]",
                map_index=index,
            )
        if self.logger is not None:
            values["logger"] = self.logger
        token = set_context(values)
        secret_token = set_secret_resolver(self.resolve_secret)
        try:
            yield
        finally:
            reset_secret_resolver(secret_token)
            reset_context(token)

    def task(
        self,
        node_i: int,
        index: int | None,
        new: State,
        attempt: int,
        ts: int,
        *,
        handlers: bool = True,
        timing: dict[str, Any] | None = None,
    ) -> State:
        """Run handlers, check the machine, append and fold one task state change.

        ``timing`` is the attempt's ``started_at``/``ended_at`` (UTC ns, measured where
        the body ran), carried in the event beside the state's own fields."""
        view = self.view
        old = (view.runs[node_i] if index is None else view.children[node_i][index]).state
        node = self.graph.nodes[node_i]
        if handlers and node.has_handlers:
            new = self.task_handlers(node_i, old, new, index)
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
        extra = None if type(new) in PLAIN else state_extra(new)
        if timing is not None:
            extra = {**extra, **timing} if extra else timing
        if self.known_secrets:
            if stored:
                result = self.scrub(result)
            message = self.scrub(message)
            extra = self.scrub(extra)
            if message is not new.message:
                # the live state is what flow.run returns and what gets printed: it tells
                # what the log tells; its result stays the run's own (real) value
                new = with_message(new, message)
        try:
            if self.key is not None and stored:
                result, extra = self._seal(key, index, attempt, new_name, result, extra)
            payload = encode_state_change(
                key, index, old_name, new_name, attempt, message, result, stored, extra
            )
        except SerializationError as exc:
            new = Failed(
                f"The result of task {_label(key, index)} could not be stored: {exc}",
                result=None,
            )
            new_name = "Failed"
            machine.check_task(view.run_id, _label(key, index), old_name, new_name)
            payload = encode_state_change(
                key,
                index,
                old_name,
                new_name,
                attempt,
                new.message,
                None,
                True,
                dict(timing) if timing else None,
            )
        dropped = False
        if stored and self.known_secrets and holds_secret_bytes(payload, self.known_secrets):
            payload, dropped = self._without_unscrubbable(
                payload, key, index, old_name, new_name, attempt, message, result, extra
            )
        ended = timing.get("ended_at") if timing is not None else None
        event = self.journal.add_payload(KIND_STATE, payload, ts, ended)
        view.apply_state(node_i, index, new, attempt, ts, event.seq)
        view.head = event.seq
        view.last_event = event
        if dropped:
            self.note(
                "result-not-stored",
                f"{_label(key, index)}: result not stored, it holds a secret in a form "
                "scrubbing cannot reach (pickled); a resume runs the task again for it",
                {"task": key, "index": index},
            )
        if self.pending_logs:
            self.flush_logs()
        if type(new) is not Running:  # a start queues nothing (see Frontier.after)
            self.on_change(node_i, index, old, new)
        return new

    def _seal(
        self,
        key: str,
        index: int | None,
        attempt: int,
        state: str,
        result: Any,
        extra: dict[str, Any] | None,
    ) -> tuple[Any, dict[str, Any] | None]:
        """The result (and a Cached state's inputs, upstream results) sealed for the
        place they are written to; None is left as it is (it tells nothing)."""
        assert self.key is not None
        origin = (self.view.run_id, key, index, attempt, state)
        if result is not None:
            result = seal(result, self.key, origin)
        if extra and extra.get("cached_inputs"):
            sealed = seal(extra["cached_inputs"], self.key, (*origin, "cached_inputs"))
            extra = {**extra, "cached_inputs": sealed}
        return result, extra

    def _without_unscrubbable(
        self,
        payload: bytes,
        key: str,
        index: int | None,
        old_name: str,
        new_name: str,
        attempt: int,
        message: Any,
        result: Any,
        extra: dict[str, Any] | None,
    ) -> tuple[bytes, bool]:
        """The payload without its result when the result's encoded bytes still hold a
        secret after scrubbing (a pickled object is opaque to it). The event is written
        as a ``checkpoint=False`` task's is: the state, no result."""
        try:
            leaks = holds_secret_bytes(packb(result), self.known_secrets)
        except SerializationError:
            leaks = True
        if not leaks:
            return payload, False  # the bytes match by chance outside the result
        bare = encode_state_change(
            key, index, old_name, new_name, attempt, message, None, False, extra
        )
        return bare, True

    def scrub(self, value: Any) -> Any:
        return scrub(value, self.known_secrets)

    def holds_secret(self, value: Any) -> bool:
        """Whether ``value`` holds a secret known to the run, seen by scrubbing or in its
        encoded bytes (a pickled object); a value that cannot be encoded counts as one."""
        if not self.known_secrets:
            return False
        if self.scrub(value) is not value:
            return True
        try:
            return holds_secret_bytes(packb(value), self.known_secrets)
        except SerializationError:
            return True

    def task_handlers(self, node_i: int, old: State, new: State, index: int | None = None) -> State:
        task = self.graph.nodes[node_i].task
        self.flush_logs()
        self.journal.flush()
        try:
            with self._handler_context(node_i, index):
                for handler in task.state_handlers:
                    new = handler(task, old, new) or new
                if task.on_failure is not None and new.is_failed():
                    task.on_failure(task, new)
        except (signals.ENDRUN, signals.StateSignal) as sig:
            return signal_state(sig) or new
        except Exception as exc:
            return Failed(f"Unexpected error while calling state handlers: {exc!r}", result=exc)
        return new

    def flow(self, new: State, ts: int) -> None:
        view = self.view
        old = view.flow_state
        flow = self.graph.flow
        if flow.state_handlers or flow.on_failure:
            self.flush_logs()
            self.journal.flush()
            try:
                with self._handler_context(None, None):
                    for handler in flow.state_handlers:
                        new = handler(flow, old, new) or new
                    if flow.on_failure is not None and new.is_failed():
                        flow.on_failure(flow, new)
            except Exception as exc:
                new = Failed(f"Unexpected error while calling state handlers: {exc!r}", result=exc)
        machine.check_flow(view.run_id, old.name, new.name)
        if self.known_secrets:  # a flow state handler's or on_failure's message
            message = self.scrub(new.message)
            if message is not new.message:
                new = with_message(new, message)
        event = self.journal.add(
            StateChanged(None, None, old.name, new.name, 0, new.message, None, True, None), ts
        )
        view.apply_state(None, None, new, 0, ts, event.seq)
        view.advance(event)
        self.journal.set_meta(self.meta())

    def meta(self) -> RunMeta:
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

    def note(self, code: str, message: str, data: dict[str, Any] | None) -> None:
        if self.known_secrets:  # notes quote task keys, messages and what bodies raised
            message, data = self.scrub(message), self.scrub(data)
        self.view.apply(self.journal.add(Note(code, message, data), now_ns()))

    def flush_logs(self) -> None:
        logs = self.pending_logs
        while logs:
            record = logs.popleft()
            if self.known_secrets:
                record = LogRecord(
                    record.task, record.index, record.level, self.scrub(record.message)
                )
            self.view.apply(self.journal.add(record, now_ns()))

    def carry_out(self, actions: Sequence[SetState], now: int | None = None) -> None:
        """Log the state changes ``decide`` (or one of its siblings) chose."""
        for action in actions:
            self.task(
                action.node,
                action.index,
                action.state,
                action.attempt,
                now_ns() if now is None else now,
                handlers=action.handlers,
                timing=None if action.timing is None else dict(action.timing),
            )
