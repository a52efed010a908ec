"""Result and payload serialization: msgpack with a registry of extension types.

Everything statecore writes to a run's log goes through :func:`packb` and comes back
through :func:`unpackb`: event payloads, task results, cached states. Plain data (None,
bool, int, float, str, bytes, list, dict) is msgpack's own and stays on its C fast path;
every other type is written as a msgpack extension type whose code says how to read it
back. Codes 0-63 are statecore's; 64-127 are for :func:`register_serializer`.

=====================  =======  ==============================================================
type                   code     written as (the extension's content)
=====================  =======  ==============================================================
tuple                  1        array of the items (read back as a tuple, not a list)
set, frozenset         2, 3     array of the items
int beyond 64 bits     4        two's-complement little-endian bytes
complex                5        two little-endian doubles
datetime               10       [wall-clock µs since 1970-01-01, UTC offset µs or nil, fold]
date                   11       proleptic Gregorian ordinal
time                   12       [µs since midnight, UTC offset µs or nil, fold]
timedelta              13       [days, seconds, microseconds]
UUID                   14       its 16 bytes
Decimal                15       its string form (NaN, infinities and -0 included)
NOT_PERSISTED          16       nothing: it reads back as the same singleton
State                  17       [class name, message, result, {slot: value}]
exceptions, signals    18       [module, qualname, [packed arg], str(exc), traceback, extra]
sealed (encrypted)     19       key id, nonce, origin and AES-GCM ciphertext (runners.encryption)
pickled (opt-in)       63       [module, qualname of the opted-in class, pickle bytes]
registered types       64-127   whatever the registered ``encode`` returns, packed again
=====================  =======  ==============================================================

What does not come back exactly, by design:

* A time zone comes back as a fixed-offset :class:`datetime.timezone` with the same
  offset (reading a zone database would be I/O); the instant and the offset are kept.
* Subclasses of int, float, str, bytes, list and dict (``IntEnum``, ``OrderedDict``, ...)
  are written as their base type; subclasses of tuple, set, datetime, Decimal, ... as the
  base type's extension; ``bytearray`` and ``memoryview`` as bytes.
* Exceptions are rebuilt exactly only for builtins, statecore signals and
  :class:`~statecore.errors.TaskError`. Any other class becomes a ``TaskError`` carrying
  the original ``"module.QualName"``, so reading a log never imports a module.
* An extension code this process does not know, or a pickled value it has not opted in
  to, reads back as :class:`msgpack.ExtType`, which packs again to the same bytes.

Example:
    >>> from datetime import datetime, timezone
    >>> from statecore.serialization import packb, unpackb
    >>> unpackb(packb({(1, 2): {3}, "at": datetime(2024, 1, 2, tzinfo=timezone.utc)}))
    {(1, 2): {3}, 'at': datetime.datetime(2024, 1, 2, 0, 0, tzinfo=datetime.timezone.utc)}
    >>> unpackb(packb(KeyError("k")))
    KeyError('k')
"""

from __future__ import annotations

import builtins
import contextlib
import contextvars
import functools
import pickle
import struct
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import msgpack

from statecore import signals, states
from statecore.codec import build_state, slots_of
from statecore.errors import SerializationError, TaskError

__all__ = [
    "SEALED_CODE",
    "USER_CODE_MAX",
    "USER_CODE_MIN",
    "disable_pickle",
    "enable_pickle",
    "packb",
    "register_serializer",
    "unpackb",
    "unregister_serializer",
]

T = TypeVar("T")

USER_CODE_MIN = 64
"""The lowest extension code :func:`register_serializer` accepts."""
USER_CODE_MAX = 127
"""The highest extension code :func:`register_serializer` accepts."""

_TUPLE, _SET, _FROZENSET, _BIGINT, _COMPLEX = 1, 2, 3, 4, 5
_DATETIME, _DATE, _TIME, _TIMEDELTA, _UUID, _DECIMAL = 10, 11, 12, 13, 14, 15
_NOT_PERSISTED, _STATE, _EXCEPTION = 16, 17, 18
SEALED_CODE = 19  # registered by statecore.runners.encryption, a layer above this one
_PICKLE = 63
_PICKLE_PROTOCOL = 5  # fixed, so a log stays readable by every Python statecore supports

_HINT = (
    "set checkpoint=False on the task, or register a serializer with "
    "statecore.serialization.register_serializer(...) (or opt in to pickle with enable_pickle)"
)


@dataclass(frozen=True, slots=True)
class _Codec:
    """How one extension code is written and read.

    ``to_value`` turns an object into a msgpack-encodable value, packed again as the
    extension's content; with ``raw`` it returns the content bytes itself. ``from_value``
    is the inverse (it receives the bytes when ``raw``).
    """

    code: int
    to_value: Callable[[Any], Any]
    from_value: Callable[[Any], Any]
    raw: bool = False
    user: bool = False


_by_class: dict[type, _Codec] = {}  # the registry: what each class is written with
_by_code: dict[int, _Codec] = {}  # what each extension code is read with
_builtin_classes: set[type] = set()
_pickle_names: set[str] = set()  # "module.qualname" of the classes opted in to pickle
_pickle_any = False  # enable_pickle() without a class: the fallback for everything else

# type -> the function `default` calls for it; filled on first sight of each type.
_handlers: dict[type, Callable[[Any], Any]] = {}


# --- packing ------------------------------------------------------------------------------

# Packers are pooled: building one costs more than packing a typical payload. `default`
# packs nested extension content while the outer packer is mid-write, so each call takes
# its own packer from the pool (list.pop/append are atomic, so threads are fine too).
_POOL: list[Any] = []
_POOL_SIZE = 8
_POOL_MAX_OUTPUT = 1 << 20  # a packer whose buffer grew past this is not kept


def _new_packer() -> Any:
    return msgpack.Packer(default=_default, use_bin_type=True, strict_types=True, buf_size=4096)


def packb(obj: Any) -> bytes:
    """Encode ``obj`` as msgpack bytes, with statecore's extension types.

    Args:
        obj: the value; see the module docstring for what can be written.

    Returns:
        The bytes; :func:`unpackb` reads them back.

    Raises:
        SerializationError: a value inside ``obj`` has no serializer; the message names
            its type and says what to do.
    """
    try:
        packer = _POOL.pop()
    except IndexError:
        packer = _new_packer()
    try:
        data: bytes = packer.pack(obj)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        if len(_POOL) < _POOL_SIZE:
            _POOL.append(packer)  # a failed pack leaves the packer's buffer empty
        if isinstance(exc, SerializationError):
            raise
        why = f"cannot serialize value: {exc}"
        if isinstance(exc, RecursionError) or "recursion" in str(exc):
            why += " (it is nested too deeply or contains itself)"
        raise SerializationError(why) from exc
    if len(data) <= _POOL_MAX_OUTPUT and len(_POOL) < _POOL_SIZE:
        _POOL.append(packer)
    return data


def unpackb(data: bytes) -> Any:
    """Decode what :func:`packb` wrote.

    Args:
        data: msgpack bytes.

    Returns:
        The value. Arrays come back as lists, map keys may be of any type.

    Raises:
        ValueError: ``data`` is not valid msgpack (msgpack's errors derive from it), or an
            extension's content is malformed; :class:`~statecore.errors.UnknownState` (a
            ValueError) for a state class this statecore does not have.
        SerializationError: a pickled value this process opted in to cannot be unpickled.
    """
    return msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_ext_hook)


def _default(obj: Any) -> Any:
    try:
        handler = _handlers[type(obj)]
    except KeyError:
        handler = _handlers[type(obj)] = _resolve(type(obj))
    return handler(obj)


def _ext_hook(code: int, data: bytes) -> Any:
    codec = _by_code.get(code)
    if codec is None:
        return msgpack.ExtType(code, data)
    return codec.from_value(data if codec.raw else unpackb(data))


def _find_codec(cls: type) -> _Codec | None:
    """The registered codec for ``cls``: exact class, nearest base, then isinstance."""
    codec = _by_class.get(cls)
    if codec is not None:
        return codec
    for base in cls.__mro__[1:]:
        if base in _NATIVE:
            return None
        codec = _by_class.get(base)
        if codec is not None:
            return codec
    for registered, codec in _by_class.items():
        if issubclass(cls, registered):  # virtual subclasses of registered ABCs
            return codec
    return None


def _resolve(cls: type) -> Callable[[Any], Any]:
    for base in cls.__mro__:
        native = _NATIVE.get(base)
        if native is not None:
            return native
        if base in _by_class:
            break
    codec = _find_codec(cls)
    if codec is None and _pickle_any:
        codec = _pickle_codec(cls)
    if codec is None:
        return functools.partial(_unencodable, _type_name(cls))
    code, to_value = codec.code, codec.to_value
    if codec.raw:
        return lambda obj: msgpack.ExtType(code, to_value(obj))
    return lambda obj: msgpack.ExtType(code, packb(to_value(obj)))


def _unencodable(type_name: str, obj: Any) -> Any:
    raise SerializationError(f"cannot serialize an object of type {type_name!r}: {_HINT}")


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _int_value(obj: int) -> Any:
    value = int.__int__(obj)  # drops an int subclass (IntEnum, ...) to a plain int
    if -(1 << 63) <= value < (1 << 64):
        return value
    size = value.bit_length() // 8 + 1
    return msgpack.ExtType(_BIGINT, value.to_bytes(size, "little", signed=True))


# Exact instances of these are packed natively; `default` sees only subclasses (and ints
# too big for msgpack), which are written as the base type.
_NATIVE: dict[type, Callable[[Any], Any]] = {
    int: _int_value,
    float: float.__float__,
    str: str.__str__,
    bytes: lambda obj: bytes(memoryview(obj)),
    bytearray: bytes,
    list: list,
    dict: dict,
}


# --- the built-in codecs ------------------------------------------------------------------

_US = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1)
_EPOCH_ORDINAL = _EPOCH.toordinal()
_PER_DAY = 86_400_000_000


def _offset(value: datetime | time) -> int | None:
    offset = value.utcoffset()
    return None if offset is None else offset // _US


@functools.lru_cache(maxsize=64)
def _zone(offset_us: int | None) -> timezone | None:
    return None if offset_us is None else timezone(timedelta(microseconds=offset_us))


def _datetime_value(dt: datetime) -> list[Any]:
    days = date.toordinal(dt) - _EPOCH_ORDINAL
    wall = days * _PER_DAY + _time_us(dt.hour, dt.minute, dt.second, dt.microsecond)
    return [wall, _offset(dt), dt.fold]


def _datetime_from(value: list[Any]) -> datetime:
    wall, offset, fold = value
    return (_EPOCH + timedelta(microseconds=wall)).replace(tzinfo=_zone(offset), fold=fold)


def _time_us(hour: int, minute: int, second: int, microsecond: int) -> int:
    return ((hour * 60 + minute) * 60 + second) * 1_000_000 + microsecond


def _time_value(t: time) -> list[Any]:
    return [_time_us(t.hour, t.minute, t.second, t.microsecond), _offset(t), t.fold]


def _time_from(value: list[Any]) -> time:
    us, offset, fold = value
    seconds, microsecond = divmod(us, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return time(hour, minute, second, microsecond, tzinfo=_zone(offset), fold=fold)


def _register_builtin(
    classes: Iterable[type],
    code: int,
    to_value: Callable[[Any], Any],
    from_value: Callable[[Any], Any],
    *,
    raw: bool = False,
) -> None:
    codec = _Codec(code, to_value, from_value, raw)
    _by_code[code] = codec
    for cls in classes:
        _by_class[cls] = codec
        _builtin_classes.add(cls)


# --- states -------------------------------------------------------------------------------


def _slots(cls: type[states.State]) -> tuple[str, ...]:
    return slots_of(cls)


def _known_state_class(cls: type[states.State]) -> type[states.State]:
    """The nearest statecore state class (a user subclass is written as its base)."""
    for klass in cls.__mro__:
        if states.STATE_CLASSES.get(klass.__name__) is klass:
            return klass
    return states.State


def _state_extras(state: states.State, cls: type[states.State]) -> dict[str, Any]:
    """The slots past ``message`` and ``result`` that are set (start_time, run_count, ...)."""
    return {name: getattr(state, name) for name in _slots(cls)[2:] if hasattr(state, name)}


def _state_value(state: states.State) -> list[Any]:
    cls = _known_state_class(type(state))
    return [cls.__name__, state.message, state.result, _state_extras(state, cls)]


def _state_from(value: list[Any]) -> states.State:
    name, message, result, extras = value
    return _build_state(name, message, result, extras)


def _build_state(name: str, message: Any, result: Any, extras: dict[str, Any]) -> states.State:
    state = build_state(name, message, result, extras)  # an unknown slot is dropped
    # a State held in a result keeps what an event's does not: its run id, its children
    for slot in ("run_id", "map_states", "_n_map_states"):
        if slot in extras and slot in _slots(type(state)):
            setattr(state, slot, extras[slot])
    return state


# --- exceptions and signals ---------------------------------------------------------------


def _traceback_text(exc: BaseException) -> str:
    if exc.__traceback__ is not None:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    text = getattr(exc, "traceback_text", "")
    return text if isinstance(text, str) else ""


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


def _pack_arg(arg: Any) -> bytes:
    """Pack one exception argument; one that cannot be packed is written as its repr."""
    try:
        return packb(arg)
    except SerializationError:
        try:
            text = repr(arg)
        except Exception:
            text = f"<unprintable {type(arg).__name__}>"
        return packb(text)


def _exception_value(exc: BaseException) -> list[Any]:
    cls = type(exc)
    extra: Any = None
    if isinstance(exc, TaskError):
        extra = exc.type_name
    elif isinstance(exc, OSError) and exc.filename is not None:
        extra = [_pack_arg(exc.filename), _pack_arg(exc.filename2)]  # not part of args
    elif isinstance(exc, signals.StateSignal) and isinstance(exc.state, states.State):
        state = exc.state
        klass = _known_state_class(type(state))
        is_self = state.result is exc
        result = None if is_self else _pack_arg(state.result)
        extra = [klass.__name__, state.message, is_self, result, _state_extras(state, klass)]
    return [
        cls.__module__,
        cls.__qualname__,
        [_pack_arg(arg) for arg in exc.args],
        _safe_str(exc),
        _traceback_text(exc),
        extra,
    ]


def _rebuildable(module: str, qualname: str) -> type[BaseException] | None:
    """The class to rebuild exactly, looked up without importing anything."""
    if module == "builtins":
        candidate = getattr(builtins, qualname, None)
    elif module == "statecore.signals":
        candidate = getattr(signals, qualname, None)
        if getattr(candidate, "__module__", None) != module:
            return None
    elif module == "statecore.errors" and qualname == "TaskError":
        return TaskError
    else:
        return None
    if isinstance(candidate, type) and issubclass(candidate, BaseException):
        return candidate
    return None


def _exception_from(value: list[Any]) -> BaseException:
    module, qualname, packed_args, message, tb_text, extra = value
    args = tuple(unpackb(arg) for arg in packed_args)
    cls = _rebuildable(module, qualname)
    if cls is TaskError:
        type_name = extra if isinstance(extra, str) else qualname
        return TaskError(type_name, *args, traceback_text=tb_text)
    exc: BaseException | None = None
    if cls is not None:
        if issubclass(cls, OSError) and extra is not None and len(args) == 2:
            filename, filename2 = (unpackb(name) for name in extra)
            args = (*args, filename, None, filename2)  # errno, strerror, filename, winerror, ...
        try:
            exc = cls(*args)
        except Exception:
            exc = None  # a signature this statecore does not accept: keep it as TaskError
    if exc is None:
        if not args and message:
            args = (message,)  # a class whose __str__ does not come from its args
        return TaskError(f"{module}.{qualname}", *args, traceback_text=tb_text)
    if isinstance(exc, signals.StateSignal) and extra is not None:
        name, state_message, is_self, result, extras = extra
        state = _build_state(name, state_message, None, extras)
        state.result = exc if is_self else unpackb(result)
        exc.state = state
    if tb_text:
        with contextlib.suppress(AttributeError, TypeError):
            exc.traceback_text = tb_text  # type: ignore[attr-defined]
    return exc


# --- pickle (opt-in) ----------------------------------------------------------------------


def _pickle_codec(cls: type) -> _Codec:
    name = _type_name(cls)
    module, qualname = cls.__module__, cls.__qualname__

    def to_value(obj: Any) -> bytes:
        try:
            data = pickle.dumps(obj, protocol=_PICKLE_PROTOCOL)
        except Exception as exc:
            raise SerializationError(f"cannot pickle an object of type {name!r}: {exc}") from exc
        return packb([module, qualname, data])

    return _Codec(_PICKLE, to_value, _unpickle, raw=True)


def _unpickle(data: bytes) -> Any:
    module, qualname, pickled = unpackb(data)
    if not (_pickle_any or f"{module}.{qualname}" in _pickle_names):
        return msgpack.ExtType(_PICKLE, data)  # not opted in here: never run pickle
    try:
        return pickle.loads(pickled)
    except Exception as exc:
        raise SerializationError(f"cannot unpickle a {module}.{qualname}: {exc}") from exc


# --- the registry API ---------------------------------------------------------------------


def _check_class(cls: Any) -> type:
    if not isinstance(cls, type):
        raise TypeError(f"expected a class, got {cls!r}")
    if cls in _builtin_classes or cls in _NATIVE or cls in (bool, type(None)):
        raise ValueError(f"{_type_name(cls)} has a built-in encoding; it cannot be replaced")
    return cls


def register_serializer(
    cls: type[T],
    *,
    code: int,
    encode: Callable[[T], Any],
    decode: Callable[[Any], T],
) -> None:
    """Teach :func:`packb` and :func:`unpackb` a type.

    Instances of ``cls`` and of its subclasses (unless one has its own serializer) are
    written as extension ``code``. Register in every process that reads the log; where
    a code is not registered its values read back as :class:`msgpack.ExtType`.

    Args:
        cls: the class.
        code: the extension code, from :data:`USER_CODE_MIN` (64) to :data:`USER_CODE_MAX`
            (127). It is stored in the log, so it must never change for a type.
        encode: turns an instance into any value :func:`packb` can write (it may hold
            registered types itself).
        decode: turns that value, as :func:`unpackb` reads it back, into an instance.

    Raises:
        ValueError: ``code`` is out of range or used by another class, ``cls`` already has
            a serializer under another code (or is opted in to pickle), or ``cls`` is a
            type with a built-in encoding.
        TypeError: ``cls`` is not a class, or ``encode`` or ``decode`` is not callable.

    Example:
        >>> from fractions import Fraction
        >>> register_serializer(
        ...     Fraction, code=100, encode=lambda f: [f.numerator, f.denominator],
        ...     decode=lambda v: Fraction(*v))
        >>> unpackb(packb({"ratio": Fraction(1, 3)}))
        {'ratio': Fraction(1, 3)}
        >>> unregister_serializer(Fraction)
    """
    _check_class(cls)
    if isinstance(code, bool) or not isinstance(code, int):
        raise TypeError(f"code must be an int, got {code!r}")
    if not USER_CODE_MIN <= code <= USER_CODE_MAX:
        raise ValueError(
            f"code {code} is out of range: use {USER_CODE_MIN}..{USER_CODE_MAX} "
            "(lower codes are statecore's)"
        )
    if not callable(encode) or not callable(decode):
        raise TypeError("encode and decode must be callable")
    for other, codec in _by_class.items():
        if codec.code == code and other is not cls:
            raise ValueError(f"code {code} is already used by {_type_name(other)}")
    existing = _by_class.get(cls)
    if existing is not None and existing.code != code:
        what = "opted in to pickle" if existing.code == _PICKLE else f"code {existing.code}"
        raise ValueError(f"{_type_name(cls)} already has a serializer ({what})")
    codec = _Codec(code, encode, decode, user=True)
    _by_class[cls] = codec
    _by_code[code] = codec
    _handlers.clear()


def register_sealed(
    cls: type, encode: Callable[[Any], bytes], decode: Callable[[bytes], Any]
) -> None:
    """Give ``cls`` statecore's reserved code for sealed values (:data:`SEALED_CODE`).

    For :mod:`statecore.runners.encryption` only: the codec lives a layer above this
    module, but its code is statecore's, outside the range users register in.
    """
    _register_builtin([cls], SEALED_CODE, encode, decode, raw=True)
    _handlers.clear()


#: the origins of the sealed values opened in this context (each thread has its own)
#: since the last :func:`take_opened`: the decryptor notes each, and readers check them
#: against the event the value sits in, which only they know
_opened: contextvars.ContextVar[list[tuple[Any, ...]] | None] = contextvars.ContextVar(
    "statecore_opened_sealed", default=None
)


def note_opened(origin: tuple[Any, ...]) -> None:
    """Note that a sealed value written for ``origin`` was decrypted here."""
    found = _opened.get()
    if found is None:
        found = []
        _opened.set(found)
    found.append(origin)


def take_opened() -> list[tuple[Any, ...]]:
    """The origins noted since the last call, in decoding order (the list is reset)."""
    found = _opened.get()
    if found is None:
        return []
    _opened.set(None)
    return found


def unregister_serializer(cls: type) -> None:
    """Forget the serializer :func:`register_serializer` gave ``cls`` (no-op if none)."""
    codec = _by_class.get(cls)
    if codec is None or not codec.user:
        return
    del _by_class[cls]
    if _by_code.get(codec.code) is codec:
        del _by_code[codec.code]
    _handlers.clear()


def enable_pickle(cls: type | None = None) -> None:
    """Opt in to pickle, for one class or as the fallback for everything.

    Pickle is never used unless asked for: it ties the log to the code that wrote it,
    and reading a pickle runs code. ``enable_pickle(cls)`` writes instances of ``cls``
    (and its subclasses) with pickle and lets this process unpickle them.
    ``enable_pickle()`` pickles any value nothing else can write, and lets this process
    unpickle anything in the log; use it only with logs you trust. Exceptions always use
    the exception codec.

    Args:
        cls: the class to pickle, or None for the global fallback.

    Raises:
        ValueError: ``cls`` has a serializer or a built-in encoding.
    """
    global _pickle_any
    if cls is None:
        _pickle_any = True
    else:
        _check_class(cls)
        existing = _by_class.get(cls)
        if existing is not None and existing.code != _PICKLE:
            raise ValueError(f"{_type_name(cls)} already has a serializer (code {existing.code})")
        _by_class[cls] = _pickle_codec(cls)
        _pickle_names.add(_type_name(cls))
    _handlers.clear()


def disable_pickle(cls: type | None = None) -> None:
    """Undo :func:`enable_pickle` for ``cls``, or the global fallback when None."""
    global _pickle_any
    if cls is None:
        _pickle_any = False
    else:
        codec = _by_class.get(cls)
        if codec is not None and codec.code == _PICKLE:
            del _by_class[cls]
        _pickle_names.discard(_type_name(cls))
    _handlers.clear()


_register_builtin([tuple], _TUPLE, list, tuple)
_register_builtin([set], _SET, list, set)
_register_builtin([frozenset], _FROZENSET, list, frozenset)
_by_code[_BIGINT] = _Codec(
    _BIGINT, int, functools.partial(int.from_bytes, byteorder="little", signed=True), raw=True
)
_register_builtin(
    [complex],
    _COMPLEX,
    lambda c: struct.pack("<dd", c.real, c.imag),
    lambda data: complex(*struct.unpack("<dd", data)),
    raw=True,
)
_register_builtin([datetime], _DATETIME, _datetime_value, _datetime_from)
_register_builtin([date], _DATE, date.toordinal, date.fromordinal)
_register_builtin([time], _TIME, _time_value, _time_from)
_register_builtin(
    [timedelta], _TIMEDELTA, lambda d: [d.days, d.seconds, d.microseconds], lambda v: timedelta(*v)
)
_register_builtin([UUID], _UUID, lambda u: u.bytes, lambda data: UUID(bytes=data), raw=True)
_register_builtin(
    [Decimal],
    _DECIMAL,
    lambda d: Decimal.__str__(d).encode("ascii"),
    lambda data: Decimal(data.decode("ascii")),
    raw=True,
)
_register_builtin(
    [states.NotPersisted], _NOT_PERSISTED, lambda _: b"", lambda _: states.NOT_PERSISTED, raw=True
)
_register_builtin([states.State], _STATE, _state_value, _state_from)
_register_builtin([BaseException], _EXCEPTION, _exception_value, _exception_from)
_by_code[_PICKLE] = _Codec(_PICKLE, bytes, _unpickle, raw=True)


def __getattr__(name: str) -> Any:
    # Deprecated: scrub and scrub_text moved to statecore.scrubbing (which imports this
    # module, so this one must not import it back); removed in the next release.
    if name in ("scrub", "scrub_text"):
        import importlib
        import warnings

        warnings.warn(
            f"statecore.serialization.{name} moved to statecore.scrubbing.{name}; "
            "the old path is removed in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module("statecore.scrubbing"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
