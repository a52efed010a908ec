"""Prefect 1's runtime secrets, resolved and scrubbed the statecore way.

``prefect.client.Secret("NAME").get()`` inside a task body and the task
``prefect.tasks.secrets.PrefectSecret("NAME")`` look, in order, in:

1. ``flow.run(secrets={...})``;
2. the local secrets, as Prefect 1 had them: ``prefect.context(secrets={...})`` (or
   ``prefect.context.update(secrets=...)``), then the environment variable
   ``PREFECT__CONTEXT__SECRETS__NAME``;
3. statecore's own environment lookup: ``STATECORE_SECRET_<NAME>``, then ``<NAME>``.

As in Prefect 1, a string value is decoded as JSON when it parses (``'{"user": "u"}'``
gives a dict, ``"42"`` gives 42), else returned as is. Inside a run the value goes
through the run's secret lookup, which learns it (the raw text and the decoded leaves)
before the body can hand it on, so it is replaced by ``<secret:NAME>`` in everything the
run writes: results, messages, logs, exports, exactly as a ``statecore.Secret`` task's.

A missing secret fails the task with ``Secret "NAME" was not found`` (statecore's
message); outside a run ``get()`` raises Prefect 1's ``ValueError('Local Secret "NAME"
was not found.')``. A body on a remote worker (``DaskRunner``) cannot tell the run what to
scrub, so ``get()`` there raises :class:`~statecore.compat.errors.OutOfScope`: use a
``PrefectSecret`` task and pass its result to the task instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from statecore import signals
from statecore.building import current_flow
from statecore.compat._layers import local_secret
from statecore.compat.errors import OutOfScope
from statecore.context import context as _run_context
from statecore.context import has_secret_resolver, resolve_secret
from statecore.tasks import Secret as _StatecoreSecret

__all__ = ["EnvVarSecret", "PrefectSecret", "Secret", "SecretBase", "decode", "resolve"]


def decode(value: Any) -> Any:
    """Prefect 1's reading of a secret: JSON when a string parses as JSON, else itself."""
    if isinstance(value, str | bytes | bytearray):
        try:
            return json.loads(value)
        except (ValueError, TypeError):
            return value
    return value


def _outside_run(name: str) -> Any:
    value = local_secret(name)
    if value is None:
        value = os.environ.get(f"STATECORE_SECRET_{name}")
    if value is None:
        value = os.environ.get(f"STATECORE_SECRET_{name.upper()}")
    if value is None:
        value = os.environ.get(name)
    return value


def resolve(name: str, *, decode_json: bool = True) -> Any:
    """A secret's value, through the run's lookup inside a task body (learnt for
    scrubbing), else from the local secrets and the environment.

    Raises:
        FAIL: inside a run, the secret is missing (the task fails).
        ValueError: outside a run, the secret is missing.
        OutOfScope: a body on a remote worker, whose secrets the run cannot scrub.
    """
    if len(_run_context):
        if not has_secret_resolver():
            raise OutOfScope(
                f'Secret("{name}").get() ran on a remote worker, which cannot tell the run '
                "to scrub the value: use a PrefectSecret task (or statecore.Secret) and pass "
                "its result to this task"
            )
        convert = decode if decode_json else None
        return resolve_secret(name, lookup=local_secret, convert=convert)
    value = _outside_run(name)
    if value is None:
        raise ValueError(f'Local Secret "{name}" was not found.')
    return decode(value) if decode_json else value


class Secret:
    """``prefect.client.Secret``: a named secret, read at run time with :meth:`get`.

    Args:
        name: the secret's name.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<Secret: {self.name}>"

    def get(self) -> Any:
        """The secret's value (see the module's docstring for where it is looked up).

        Raises:
            ValueError: called while a flow is being built, or missing outside a run.
            FAIL: missing inside a run.
        """
        if not len(_run_context) and current_flow() is not None:
            raise ValueError(
                "Secrets should only be retrieved during a Flow run, not while building a Flow."
            )
        return resolve(self.name)

    def exists(self) -> bool:
        """Whether the secret can be found."""
        try:
            self.get()
        except (ValueError, signals.FAIL):
            return False
        return True


class SecretBase(_StatecoreSecret):
    """Base of the secret tasks: a ``statecore.Secret`` task (``checkpoint=False``, never
    stored, scrubbed everywhere), resolved through Prefect 1's local secrets as well."""

    #: the run's lookup options, also used to learn the value before the first event
    secret_options: Mapping[str, Any] = MappingProxyType(
        {"lookup": local_secret, "convert": decode}
    )

    def __init__(self, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name or type(self).__name__, **kwargs)

    def run(self, name: str | None = None) -> Any:  # type: ignore[override]
        return resolve(name or self.name)


class PrefectSecret(SecretBase):
    """``prefect.tasks.secrets.PrefectSecret("NAME")``: a task whose result is the
    secret's value.

    Args:
        name: the secret's name (also the task's name).
        **kwargs: task options (``max_retries``, ``state_handlers``, ...).
    """


class EnvVarSecret(SecretBase):
    """``prefect.tasks.secrets.EnvVarSecret``: a secret task read from one environment
    variable (``flow.run(secrets=...)`` still comes first, as for every statecore secret).

    Args:
        name: the secret's name (also the task's name).
        env_var: the variable to read (``name`` by default).
        cast: applied to the value read (e.g. ``int``).
        raise_if_missing: fail when the variable is unset (else the result is None).
        **kwargs: task options.
    """

    def __init__(
        self,
        name: str | None = None,
        env_var: str | None = None,
        cast: Any = None,
        raise_if_missing: bool = False,
        **kwargs: Any,
    ) -> None:
        self.env_var = env_var or name
        self.cast = cast
        self.raise_if_missing = raise_if_missing
        super().__init__(name or self.env_var, **kwargs)
        self.secret_options = MappingProxyType({"lookup": self._lookup})

    def _lookup(self, name: str) -> Any:
        return os.environ.get(self.env_var or name)

    def run(self, name: str | None = None) -> Any:  # type: ignore[override]
        key = name or self.name
        try:
            if len(_run_context) and has_secret_resolver():
                value = resolve_secret(key, lookup=self._lookup)
            else:
                value = self._lookup(key)
        except signals.FAIL:
            value = None
        if value is None:
            if self.raise_if_missing:
                raise ValueError(f"Environment variable not set: {self.env_var or key}")
            return None
        return self.cast(value) if self.cast is not None else value
