"""Scrubbing: every secret value known to a run, replaced by ``<secret:NAME>``.

The runner scrubs what it writes (results, messages, log lines, parameters) with
:func:`scrub` and :func:`scrub_text`; both return their argument itself when no secret
occurs in it, so the common case costs one regular-expression search. Values of types
given to :func:`~statecore.serialization.register_serializer` are scrubbed through their
encoded form.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from statecore import states
from statecore.errors import TaskError
from statecore.serialization import (
    _find_codec,
    _slots,
    _traceback_text,
    _type_name,
)

__all__ = ["holds_secret_bytes", "scrub", "scrub_text", "unscrub", "with_message"]

T = TypeVar("T")
S = TypeVar("S", bound=states.State)


@dataclass(frozen=True, slots=True)
class _Rules:
    text: re.Pattern[str]
    data: re.Pattern[bytes]
    by_text: dict[str, str]
    by_data: dict[bytes, bytes]


@functools.lru_cache(maxsize=32)
def _compile(pairs: tuple[tuple[str, str], ...]) -> _Rules:
    by_text: dict[str, str] = {}
    for name, value in pairs:
        by_text.setdefault(value, f"<secret:{name}>")
    # longest first, so a secret that contains another one is replaced whole
    values = sorted(by_text, key=len, reverse=True)
    by_data = {value.encode(): by_text[value].encode() for value in values}
    return _Rules(
        re.compile("|".join(map(re.escape, values))),
        re.compile(b"|".join(map(re.escape, by_data))),
        by_text,
        by_data,
    )


def _rules(secrets: Mapping[str, str]) -> _Rules | None:
    if not secrets:
        return None
    pairs = tuple(
        sorted((name, value) for name, value in secrets.items() if isinstance(value, str) and value)
    )
    return _compile(pairs) if pairs else None


def unscrub(obj: Any, secrets: Mapping[str, str]) -> Any:
    """Put the secrets' values back where ``<secret:NAME>`` stands in plain data (dicts,
    lists, tuples, strings): a run's parameters, as its tasks must see them though the
    log holds them scrubbed.

    Example:
        >>> unscrub({"dsn": "u:<secret:DB>@h"}, {"DB": "pw"})
        {'dsn': 'u:pw@h'}
    """
    if not secrets:
        return obj
    if isinstance(obj, str):
        if "<secret:" not in obj:
            return obj
        for name, value in secrets.items():
            if isinstance(value, str):
                obj = obj.replace(f"<secret:{name}>", value)
        return obj
    if isinstance(obj, dict):
        return {k: unscrub(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unscrub(v, secrets) for v in obj]
    if isinstance(obj, tuple):
        return tuple(unscrub(v, secrets) for v in obj)
    return obj


def scrub_text(text: str, secrets: Mapping[str, str]) -> str:
    """Replace every secret value in ``text`` with ``<secret:NAME>``.

    Args:
        text: the text.
        secrets: secret name -> value; values that are not non-empty strings are ignored.

    Returns:
        The scrubbed text (``text`` itself when no secret occurs in it).

    Example:
        >>> scrub_text("token=hunter2", {"PASSWORD": "hunter2"})
        'token=<secret:PASSWORD>'
    """
    rules = _rules(secrets)
    return text if rules is None else _Scrubber(rules).text(text)


def holds_secret_bytes(data: bytes, secrets: Mapping[str, str]) -> bool:
    """Whether ``data`` (an encoded payload) holds a secret's UTF-8 bytes: the check after
    scrubbing, for what it cannot see into (pickled values, opaque extension bytes).

    Example:
        >>> holds_secret_bytes(b"\\x81\\xa1k\\xa7hunter2", {"PASSWORD": "hunter2"})
        True
    """
    rules = _rules(secrets)
    return rules is not None and rules.data.search(data) is not None


def scrub(obj: T, secrets: Mapping[str, str]) -> T:
    """A copy of ``obj`` with every secret value replaced by ``<secret:NAME>``.

    Strings and bytes are scrubbed wherever they are: in lists, tuples, sets and dicts
    (keys and values), in states (message, result and the other fields), in exceptions
    and signals (arguments, attributes and traceback text) and inside the encoded form of
    types given to :func:`register_serializer`. A scrubbed exception is a copy without the
    live traceback; it carries the scrubbed text as ``traceback_text``. A scrubbed
    container that is a subclass of list, dict or set comes back as the base type (as
    :func:`packb` would write it); a namedtuple keeps its class. Other objects
    (including those written with pickle) are left as they are.

    Args:
        obj: the value.
        secrets: secret name -> value; values that are not non-empty strings are ignored.

    Returns:
        ``obj`` itself when no secret occurs in it, else a copy in which only the parts
        that held a secret are new.

    Example:
        >>> scrub({"url": "https://u:pw@host", "n": [1, ("pw",)]}, {"DB": "pw"})
        {'url': 'https://u:<secret:DB>@host', 'n': [1, ('<secret:DB>',)]}
    """
    rules = _rules(secrets)
    if rules is None:
        return obj
    result: T = _Scrubber(rules)(obj)
    return result


_ATOMS = frozenset(
    {
        int,
        float,
        bool,
        complex,
        type(None),
        Decimal,
        UUID,
        datetime,
        date,
        time,
        timedelta,
        states.NotPersisted,
    }
)


def _same(old: Iterable[Any], new: Iterable[Any]) -> bool:
    return all(a is b for a, b in zip(old, new, strict=True))


class _Scrubber:
    """One scrub: the rules and a memo of what was already seen (shared parts, cycles)."""

    def __init__(self, rules: _Rules) -> None:
        self.rules = rules
        self.memo: dict[int, tuple[Any, Any]] = {}  # id -> (original, kept alive; copy)

    def text(self, text: str) -> str:
        rules = self.rules
        if rules.text.search(text) is None:
            return text
        return rules.text.sub(lambda m: rules.by_text[m.group()], text)

    def data(self, data: bytes) -> bytes:
        rules = self.rules
        if rules.data.search(data) is None:
            return data
        return rules.data.sub(lambda m: rules.by_data[m.group()], data)

    def __call__(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.text(obj)
        if type(obj) in _ATOMS:
            return obj
        if isinstance(obj, bytes):
            return self.data(obj)
        key = id(obj)
        seen = self.memo.get(key)
        if seen is not None:
            return seen[1]
        self.memo[key] = (obj, obj)  # a cycle back to obj keeps pointing at the original
        new = self._compound(obj)
        self.memo[key] = (obj, new)
        return new

    def _compound(self, obj: Any) -> Any:
        if isinstance(obj, list):
            items = [self(item) for item in obj]
            return obj if _same(obj, items) else items
        if isinstance(obj, tuple):
            items = [self(item) for item in obj]
            if _same(obj, items):
                return obj
            make = None if type(obj) is tuple else getattr(obj, "_make", None)
            return make(items) if callable(make) else tuple(items)  # a namedtuple keeps its class
        if isinstance(obj, dict):
            old = [item for pair in obj.items() for item in pair]
            new = [self(item) for item in old]
            return obj if _same(old, new) else dict(zip(new[::2], new[1::2], strict=True))
        if isinstance(obj, set | frozenset):
            items = [self(item) for item in obj]
            if _same(obj, items):
                return obj
            return frozenset(items) if isinstance(obj, frozenset) else set(items)
        if isinstance(obj, states.State):
            return self._state(obj)
        if isinstance(obj, BaseException):
            return self._exception(obj)
        codec = _find_codec(type(obj))
        if codec is not None and codec.user:
            value = codec.to_value(obj)
            new_value = self(value)
            return obj if new_value is value else codec.from_value(new_value)
        return obj

    def _state(self, state: states.State) -> states.State:
        names = [name for name in _slots(type(state)) if hasattr(state, name)]
        old = [getattr(state, name) for name in names]
        new = [self(value) for value in old]
        if _same(old, new):
            return state
        return _copy_state(state, dict(zip(names, new, strict=True)))

    def _exception(self, exc: BaseException) -> BaseException:
        args = tuple(self(arg) for arg in exc.args)
        attrs = dict(getattr(exc, "__dict__", {}))
        if isinstance(exc, OSError):  # fields outside args and __dict__
            attrs.update(filename=exc.filename, filename2=exc.filename2)
        new_attrs = {name: self(value) for name, value in attrs.items()}
        tb_text = _traceback_text(exc)
        new_tb_text = self.text(tb_text)
        unchanged = _same(exc.args, args) and _same(attrs.values(), new_attrs.values())
        if unchanged and new_tb_text is tb_text:
            return exc
        new = _copy_exception(exc, args)
        if new is None:
            return TaskError(_type_name(type(exc)), *args, traceback_text=new_tb_text)
        for name, value in new_attrs.items():
            setattr(new, name, value)
        if new_tb_text:
            new.traceback_text = new_tb_text  # type: ignore[attr-defined]
        state = new_attrs.get("state")
        if isinstance(state, states.State) and state.result is exc:  # a signal's own state
            new.__dict__["state"] = _copy_state(state, {"result": new})
        return new


def with_message(state: S, message: Any) -> S:
    """A copy of ``state`` (same class and fields) with another message."""
    new: S = _copy_state(state, {"message": message})  # type: ignore[assignment]
    return new


def _copy_state(state: states.State, changes: dict[str, Any]) -> states.State:
    cls = type(state)
    new = cls.__new__(cls)
    for name in _slots(cls):
        if name in changes:
            setattr(new, name, changes[name])
        elif hasattr(state, name):
            setattr(new, name, getattr(state, name))
    return new


def _copy_exception(exc: BaseException, args: tuple[Any, ...]) -> BaseException | None:
    """An exception of ``exc``'s class with ``args``, made without calling ``__init__``."""
    cls = type(exc)
    try:
        new = cls.__new__(cls, *args)
        new.args = args
    except Exception:
        return None  # a class with its own __new__ that refuses these arguments
    return new
