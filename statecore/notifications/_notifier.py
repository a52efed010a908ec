"""The machinery every notifier shares: bound options, state filters, secrets, isolation.

A :class:`Notifier` is a state handler ``(tracked_obj, old_state, new_state) -> new_state``
with keyword options bound to it. Called with keyword options only, it returns a copy
with those options bound too, the way Prefect 1's ``toolz.curry``-ed notifiers behave
(``slack_notifier(only_states=[Failed])``). Options are checked when they are bound, so a
misspelled option or a state that is not a State class fails where the flow is defined,
not halfway through a run.

Failure isolation is the first rule: the runner turns a state handler that raises into a
Failed task (Prefect 1 does the same), so a notifier that cannot deliver logs a WARNING
and returns ``new_state`` unchanged, unless ``raise_errors=True`` asks for Prefect 1's
raising behaviour. What is logged or raised never holds the secret values it used.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

from statecore import signals
from statecore.context import context, resolve_secret
from statecore.errors import StatecoreError
from statecore.flow import Flow
from statecore.states import State

__all__ = ["NotificationError", "Notifier", "Delivery", "lookup_secret", "logger"]

#: every notifier's warnings go here (and to the task's logger when one is in context)
logger = logging.getLogger("statecore.notifications")

_REDACTED = "***"


class NotificationError(StatecoreError):
    """A notification could not be built or delivered (a missing secret, a refused
    connection, an HTTP error status, an SMTP error). Raised only with
    ``raise_errors=True``; otherwise its text is logged as a WARNING."""


@dataclass(frozen=True)
class Delivery:
    """What a notifier's sender is given for one state change."""

    notifier: str
    tracked_obj: Any
    old_state: State
    new_state: State
    options: Mapping[str, Any]
    #: the secret values the sender looked up, so error texts can be redacted
    secrets: list[str]

    def secret(self, name: str) -> str:
        """The value of secret ``name`` (see :func:`lookup_secret`), remembered for
        redaction."""
        value = lookup_secret(name, self.notifier)
        self.secrets.append(value)
        return value


Sender = Callable[[Delivery], None]
Check = Callable[[str, Any], None]

#: options every notifier takes, with their defaults
COMMON_OPTIONS: dict[str, Any] = {
    "ignore_states": None,
    "only_states": None,
    "backend_info": True,
    "timeout": 10.0,
    "raise_errors": False,
}


def lookup_secret(name: str, notifier: str = "notifier") -> str:
    """The value of secret ``name`` for a notifier.

    Looked up, in order:

    1. the runner's secret lookup (:func:`statecore.context.resolve_secret`), which sees
       ``flow.run(secrets=...)`` when the runner installed it for the calling thread;
    2. with the Prefect 1 layer loaded (:mod:`statecore.compat`), its local secrets:
       ``prefect.context(secrets={...})``;
    3. the environment variables ``NAME``, ``STATECORE_SECRET_NAME`` and
       ``PREFECT__CONTEXT__SECRETS__NAME`` (Prefect 1's local secrets).

    A value from Prefect 1's sources (2 and the last variable) is read as Prefect 1 read
    it: a JSON string literal (``'"https://..."'``) is decoded.

    Raises:
        NotificationError: the secret is found nowhere, or is not a non-empty string.
    """
    value: Any = None
    try:
        value = resolve_secret(name)
    except signals.FAIL:
        value = None  # no resolver in this thread, or it does not know the name
    if value is None:
        value = _prefect1_decoded(_compat_local_secret(name))
    if value is None:
        value = os.environ.get(name, os.environ.get(f"STATECORE_SECRET_{name}"))
    if value is None:
        value = _prefect1_decoded(os.environ.get(f"PREFECT__CONTEXT__SECRETS__{name}"))
    if value is None:
        raise NotificationError(
            f'{notifier}: secret "{name}" was not found; give it in flow.run(secrets=...) '
            f"or set the environment variable {name} (or PREFECT__CONTEXT__SECRETS__{name})"
        )
    if not isinstance(value, str) or not value:
        raise NotificationError(
            f'{notifier}: secret "{name}" must be a non-empty string, not {type(value).__name__}'
        )
    return value


def _compat_local_secret(name: str) -> Any:
    # Read only when a user already loaded the Prefect 1 layer: importing it here would
    # make every notifier depend on the compatibility package (and form an import cycle,
    # since prefect.utilities.notifications is this package).
    layers = sys.modules.get("statecore.compat._layers")
    local_secret = getattr(layers, "local_secret", None)
    return local_secret(name) if callable(local_secret) else None


def _prefect1_decoded(value: Any) -> Any:
    if isinstance(value, str) and value.startswith('"'):
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        return decoded if isinstance(decoded, str) else value
    return value


def _check_states(option: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | set | frozenset):
        raise TypeError(f"{option} must be a list of State classes, not {value!r}")
    for item in value:
        if not (isinstance(item, type) and issubclass(item, State)):
            raise TypeError(f"{option} must hold State classes (e.g. Failed), not {item!r}")


def _check_common(option: str, value: Any) -> None:
    if option in ("ignore_states", "only_states"):
        _check_states(option, value)
    elif option == "timeout" and (
        isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
    ):
        raise ValueError(f"timeout must be a positive number of seconds, not {value!r}")


def describe(tracked_obj: Any) -> str:
    """``flow 'name'`` or ``task 'name'``: how messages name what changed state."""
    kind = "flow" if isinstance(tracked_obj, Flow) else "task"
    return f"{kind} {getattr(tracked_obj, 'name', type(tracked_obj).__name__)!r}"


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret value in it replaced by ``***`` (longest first, so a
    value containing another is redacted whole)."""
    for value in sorted(secrets, key=len, reverse=True):
        if value:
            text = text.replace(value, _REDACTED)
    return text


class Notifier:
    """A notifier: a state handler with bound options.

    Args:
        name: the notifier's public name (``slack_notifier``), used in messages.
        send: builds and delivers one notification; raises on failure.
        options: the notifier's own options with their defaults (beside
            :data:`COMMON_OPTIONS`).
        check: validates one option's value when it is bound (raises TypeError or
            ValueError).
        bound: options bound so far.
    """

    __slots__ = ("_bound", "_check", "_defaults", "_name", "_send")

    def __init__(
        self,
        name: str,
        send: Sender,
        options: Mapping[str, Any],
        check: Check | None = None,
        bound: Mapping[str, Any] | None = None,
    ) -> None:
        self._name = name
        self._send = send
        self._defaults: dict[str, Any] = {**COMMON_OPTIONS, **options}
        self._check = check
        self._bound: dict[str, Any] = dict(bound or {})

    @property
    def __name__(self) -> str:
        return self._name

    @property
    def options(self) -> dict[str, Any]:
        """Every option with its value: bound ones, else the defaults."""
        return {**self._defaults, **self._bound}

    def __repr__(self) -> str:
        bound = ", ".join(f"{k}={v!r}" for k, v in self._bound.items())
        return f"{self._name}({bound})"

    def _bind(self, options: Mapping[str, Any]) -> dict[str, Any]:
        for option, value in options.items():
            if option not in self._defaults:
                known = ", ".join(sorted(self._defaults))
                raise TypeError(
                    f"{self._name}() got an unknown option {option!r}; it takes {known}"
                )
            _check_common(option, value)
            if self._check is not None:
                self._check(option, value)
        return {**self._bound, **options}

    @overload
    def __call__(self, /, **options: Any) -> Notifier: ...

    @overload
    def __call__(
        self, tracked_obj: Any, old_state: State, new_state: State, /, **options: Any
    ) -> State: ...

    def __call__(self, /, *args: Any, **options: Any) -> Notifier | State:
        bound = self._bind(options)
        if not args:
            return Notifier(self._name, self._send, self._defaults, self._check, bound)
        if len(args) != 3:
            raise TypeError(
                f"{self._name}() takes (tracked_obj, old_state, new_state) or keyword "
                f"options only; got {len(args)} positional arguments"
            )
        tracked_obj, old_state, new_state = args
        return self._handle(tracked_obj, old_state, new_state, {**self._defaults, **bound})

    def _handle(
        self, tracked_obj: Any, old_state: State, new_state: State, options: dict[str, Any]
    ) -> State:
        if not wanted(new_state, options["only_states"], options["ignore_states"]):
            return new_state
        delivery = Delivery(self._name, tracked_obj, old_state, new_state, options, [])
        try:
            self._send(delivery)
        except Exception as exc:
            # Every failure, a bug in a user's formatter included, must leave the run alone.
            failure = _failure_text(exc, delivery)
            unexpected = not isinstance(exc, NotificationError | OSError)
        else:
            return new_state
        what = f"{self._name}: notification for {describe(tracked_obj)} ({new_state.name})"
        text = f"{what} was not sent: {failure}"
        if options["raise_errors"]:
            # raised outside the except block: the original error (an HTTPError holds
            # the URL) is neither its cause nor its context, so it cannot reach the log
            raise NotificationError(text)
        logger.warning(text, exc_info=unexpected and logger.isEnabledFor(logging.DEBUG))
        task_logger = context.get("logger")
        if task_logger is not None and hasattr(task_logger, "warning"):
            task_logger.warning(text)
        return new_state


def _failure_text(exc: Exception, delivery: Delivery) -> str:
    if isinstance(exc, NotificationError):
        text = str(exc)
        prefix = f"{delivery.notifier}: "
        text = text.removeprefix(prefix)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return redact(text, delivery.secrets)


def wanted(
    state: State,
    only_states: Sequence[type[State]] | None,
    ignore_states: Sequence[type[State]] | None,
) -> bool:
    """Whether ``state`` is notified: not an instance of any ``ignore_states`` class and,
    when ``only_states`` is given, an instance of one of them (subclasses match, as in
    Prefect 1: ``only_states=[Failed]`` notifies TimedOut and TriggerFailed too).

    >>> from statecore.states import Failed, Running, TimedOut
    >>> wanted(TimedOut(), [Failed], None), wanted(Running(), [Failed], None)
    (True, False)
    >>> wanted(TimedOut(), None, [Failed])
    False
    """
    if any(isinstance(state, ignored) for ignored in ignore_states or ()):
        return False
    return not only_states or any(isinstance(state, kind) for kind in only_states)
