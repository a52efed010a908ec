"""What a task body is given: its inputs, its ``statecore.context``, the run's secrets.

:class:`Bodies` is the driver's part that faces user code: it resolves secrets (and
learns every value to scrub), shows tasks the run's real parameters though the log holds
them scrubbed, builds each attempt's context, and runs a body in the driver's own thread
or packs it as an :class:`~statecore.runners.execution.Attempt` for an executor.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from typing import Any

from statecore import signals
from statecore.decide import RunTask
from statecore.fold import RunView
from statecore.graph import Graph
from statecore.runners.encryption import check_inputs, placeholders_made
from statecore.runners.execution import Attempt, Outcome, RunLogger, run_body
from statecore.scrubbing import unscrub

__all__ = ["Bodies"]


class Bodies:
    """Runs and packs one run's task bodies.

    Args:
        graph: the compiled flow.
        view: the live view (run id, parameters).
        secrets: ``flow.run(secrets=...)``.
        known_secrets: every secret value known to the run, by name; shared with the
            recorder, which scrubs them; grows as secrets are resolved.
        logger: ``context["logger"]`` for bodies run here.
    """

    def __init__(
        self,
        graph: Graph,
        view: RunView,
        secrets: Mapping[str, Any],
        known_secrets: dict[str, str],
        logger: RunLogger,
    ) -> None:
        self.graph = graph
        self.view = view
        self.secrets = dict(secrets)
        self.known_secrets = known_secrets
        self.logger = logger
        #: the run's schedule slot (UTC ns), else when it started (set by the driver)
        self.scheduled_start: int | None = None
        self._real_parameters: dict[str, Any] | None = None

    def resolve_secret(
        self,
        name: str,
        lookup: Callable[[str], Any] | None = None,
        convert: Callable[[Any], Any] | None = None,
    ) -> Any:
        """A secret's value: ``secrets=``, then ``lookup`` (another API's own places, as
        Prefect 1's local secrets), then ``STATECORE_SECRET_<NAME>``, then ``<NAME>``;
        remembered for scrubbing. ``convert`` (Prefect 1 decodes JSON) is applied to the
        value found, and the texts of both are scrubbed.

        Raises:
            FAIL: ``Secret "NAME" was not found``.
        """
        value: Any = self.secrets.get(name)
        if value is None and lookup is not None:
            value = lookup(name)
        if value is None:
            value = os.environ.get(f"STATECORE_SECRET_{name}")
            if value is None:
                value = os.environ.get(f"STATECORE_SECRET_{name.upper()}")
            if value is None:
                value = os.environ.get(name)
        if value is None:
            raise signals.FAIL(f'Secret "{name}" was not found')
        texts = _secret_texts(name, value)
        if convert is not None:
            value = convert(value)
            for label, text in _secret_texts(name, value).items():
                texts[label if texts.get(label, text) == text else f"{label}(decoded)"] = text
        # one C-level update: a body's thread may learn a secret while the driver scrubs
        self.known_secrets.update(texts)
        return value

    def learn_secrets(self) -> None:
        """Resolve every Secret task's value up front (a missing one fails its task
        later), so a parameter equal to a secret from the environment is scrubbed from
        the first event on, as one given in ``secrets=`` is. A Secret task's
        ``secret_options`` (the Prefect 1 layer's) are its lookup's options."""
        for node in self.graph.nodes:
            if node.is_secret:
                options = dict(getattr(node.task, "secret_options", None) or {})
                with contextlib.suppress(signals.FAIL):
                    self.resolve_secret(node.task.name, **options)

    def parameters(self) -> dict[str, Any]:
        """The run's parameters as its tasks see them: the log holds them scrubbed."""
        if not self.known_secrets:
            return self.view.parameters
        if self._real_parameters is None:
            self._real_parameters = unscrub(self.view.parameters, self.known_secrets)
        return self._real_parameters

    def context(self, rt: RunTask) -> dict[str, Any]:
        """``statecore.context`` for one attempt (the logger is added where it runs)."""
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
            "parameters": self.parameters() if self.known_secrets else self.view.parameters,
            "task_run_count": rt.attempt,
            "resume": rt.resume,
            "scheduled_start_time": self.scheduled_start,
        }
        if rt.loop_count:
            ctx["task_loop_count"] = rt.loop_count + 1
            ctx["task_loop_result"] = rt.loop_result
        return ctx

    def _check(self, rt: RunTask) -> None:
        """A body never gets a value the log holds encrypted and this process could not
        decrypt (resumed without ``STATECORE_ENCRYPTION_KEY``, or with another key)."""
        if placeholders_made() and (rt.inputs or rt.loop_result is not None):
            node = self.graph.nodes[rt.node]
            label = node.key if rt.index is None else f"{node.key}[{rt.index}]"
            check_inputs(label, {**rt.inputs, "task_loop_result": rt.loop_result})

    def attempt(self, rt: RunTask) -> Attempt:
        """One attempt, packed for an executor.

        Raises:
            EncryptionError: an input is encrypted and cannot be decrypted here.
        """
        self._check(rt)
        node = self.graph.nodes[rt.node]
        return Attempt(node.task, rt.inputs, self.context(rt), node.timeout)

    def execute(self, rt: RunTask) -> Outcome:
        """Run one attempt's body here, in the driver's thread.

        Raises:
            EncryptionError: an input is encrypted and cannot be decrypted here.
        """
        self._check(rt)
        node = self.graph.nodes[rt.node]
        context = self.context(rt)
        context["logger"] = self.logger
        return run_body(node.task, rt.inputs, context, node.timeout, self.resolve_secret)


def _secret_texts(name: str, value: Any, depth: int = 0) -> dict[str, str]:
    """The texts to scrub for one secret's value, by the name each is shown as.

    A string is itself; bytes are their UTF-8 text (a secret handed in as bytes is
    usually printed decoded); a dict, list or tuple (a JSON secret: credentials with a
    user and a password) gives each of its leaves, named ``NAME.key`` / ``NAME[i]``. Other
    values (numbers, objects) have no text the scrubber could match reliably; see the
    README's limits.
    """
    if isinstance(value, str):
        return {name: value} if value else {}
    if isinstance(value, bytes | bytearray):
        try:
            text = bytes(value).decode()
        except UnicodeDecodeError:
            return {}  # binary: it can only leak through a transformation (base64, hex)
        return {name: text} if text else {}
    if depth >= 8:  # a secret is a few levels deep at most; a cycle ends here
        return {}
    found: dict[str, str] = {}
    if isinstance(value, Mapping):
        for key, item in value.items():
            found.update(_secret_texts(f"{name}.{key}", item, depth + 1))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found.update(_secret_texts(f"{name}[{i}]", item, depth + 1))
    return found
