"""Serialization: every registered type round-trips, exceptions and signals are rebuilt,
unwritable values fail with a message that says what to do, secrets are scrubbed."""

from __future__ import annotations

import abc
import enum
import math
import sys
from collections import OrderedDict, namedtuple
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgpack
import pendulum
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statecore import events, signals, states
from statecore.errors import SerializationError, TaskError, UnknownState
from statecore.serialization import (
    USER_CODE_MAX,
    USER_CODE_MIN,
    disable_pickle,
    enable_pickle,
    packb,
    register_serializer,
    scrub,
    scrub_text,
    unpackb,
    unregister_serializer,
)


def roundtrip(value: Any) -> Any:
    return unpackb(packb(value))


def same(a: Any, b: Any) -> bool:
    """Equal, and of exactly the same types all the way down (1 is not 1.0, [] is not ())."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, Decimal):
        return str(a) == str(b)
    if isinstance(a, datetime | time):
        return (
            a.replace(tzinfo=None) == b.replace(tzinfo=None)
            and a.utcoffset() == b.utcoffset()
            and a.fold == b.fold
        )
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):  # msgpack keeps the order of a map
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, set | frozenset):
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    if isinstance(a, states.State):
        return all(
            same(getattr(a, name, None), getattr(b, name, None))
            for cls in type(a).__mro__
            for name in cls.__dict__.get("__slots__", ())
        )
    if isinstance(a, BaseException):
        return same(a.args, b.args)
    return bool(a == b)


# --- strategies: every built-in type, nested --------------------------------------------------

fixed_offsets = st.builds(
    timezone,
    st.timedeltas(
        min_value=-timedelta(hours=23, minutes=59, seconds=59),
        max_value=timedelta(hours=23, minutes=59, seconds=59),
    ),
)
ints = (
    st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**64 + 1)
    | st.integers(max_value=-(2**63) + 1, min_value=-(2**63) - 2)
    | st.integers(min_value=2**200)
    | st.integers(max_value=-(2**200))
)
hashable_leaves = (
    st.none()
    | st.booleans()
    | ints
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.complex_numbers(allow_nan=False)
    | st.datetimes(timezones=st.none() | fixed_offsets)
    | st.dates()
    | st.times(timezones=st.none() | fixed_offsets)
    | st.timedeltas()
    | st.uuids()
    | st.decimals(allow_nan=False)
    | st.just(states.NOT_PERSISTED)
)
leaves = hashable_leaves | st.floats() | st.decimals()  # NaN and sNaN cannot go in sets
hashables = st.recursive(
    hashable_leaves,
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=8,
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.sets(hashables, max_size=4)
        | st.frozensets(hashables, max_size=4)
        | st.dictionaries(hashables, inner, max_size=4)
    ),
    max_leaves=20,
)
state_classes = st.sampled_from(sorted(states.STATE_CLASSES.values(), key=lambda c: c.__name__))
builtin_exceptions = st.sampled_from([ValueError, KeyError, RuntimeError, ZeroDivisionError])


@settings(max_examples=300)
@given(values)
def test_every_builtin_type_round_trips_exactly(value: Any) -> None:
    assert same(roundtrip(value), value)


@given(state_classes, st.one_of(st.none(), st.text()), values)
def test_states_round_trip_with_any_result(
    cls: type[states.State], message: str | None, result: Any
) -> None:
    state = cls(message, result)
    back = roundtrip(state)
    assert type(back) is cls
    assert same(back, state)  # not ==: a NaN result is never equal to itself


@given(builtin_exceptions, st.lists(values, max_size=3))
def test_builtin_exceptions_round_trip_with_any_args(cls: type[Exception], args: list[Any]) -> None:
    back = roundtrip(cls(*args))
    assert type(back) is cls
    assert same(back.args, tuple(args))


@given(st.lists(values, max_size=3))
def test_round_trip_inside_an_event_payload(result: list[Any]) -> None:
    body = events.StateChanged("t", 0, "Running", "Success", 1, "ok", result=tuple(result))
    event = events.StoredEvent("run", 1, 0, b"", body.kind, 0, events.encode_body(body))
    decoded = events.decode_body(event)
    assert isinstance(decoded, events.StateChanged)
    assert same(decoded.result, tuple(result))


# --- the wire format of the common case ---------------------------------------------------


PLAIN = [1, "task-1", None, "Running", "Success", 1, "Task run succeeded.", 42, True, None]


@pytest.mark.parametrize(
    "value",
    [PLAIN, {"a": [1.5, b"x", None]}, 2**64 - 1, -(2**63), "é", [], {}],
    ids=repr,
)
def test_plain_data_is_msgpacks_own_encoding(value: Any) -> None:
    assert packb(value) == msgpack.packb(value, use_bin_type=True)
    assert same(roundtrip(value), value)


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**40, -(10**40)])
def test_ints_past_64_bits_use_an_extension(value: int) -> None:
    assert msgpack.unpackb(packb(value), ext_hook=lambda code, data: code) == 4
    assert roundtrip(value) == value


def test_tuples_stay_tuples_and_lists_stay_lists() -> None:
    back = roundtrip([(1, [2, (3,)]), [()]])
    assert back == [(1, [2, (3,)]), [()]]
    assert type(back[0]) is tuple and type(back[0][1]) is list and type(back[0][1][1]) is tuple


def test_map_keys_of_any_encodable_type() -> None:
    key_types = {
        (1, "a"): 1,
        frozenset({2}): 2,
        date(2024, 1, 1): 3,
        UUID(int=7): 4,
        None: 5,
        1.5: 6,
        b"k": 7,
    }
    back = roundtrip(key_types)
    assert same(back, key_types)


def test_naive_and_aware_datetimes_keep_their_offset() -> None:
    naive = datetime(2024, 5, 6, 7, 8, 9, 123456)
    aware = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=-3, seconds=1)))
    assert roundtrip(naive).tzinfo is None
    back = roundtrip(aware)
    assert back == aware and back.utcoffset() == timedelta(hours=-3, seconds=1)
    assert roundtrip(datetime(2024, 1, 1, tzinfo=UTC)).tzinfo is UTC


def test_a_named_time_zone_comes_back_as_its_offset() -> None:
    dt = pendulum.datetime(2024, 7, 1, 12, tz="Europe/Paris")
    back = roundtrip(dt)
    assert type(back) is datetime
    assert back == dt
    assert back.utcoffset() == timedelta(hours=2)
    assert back.replace(tzinfo=None) == datetime(2024, 7, 1, 12)


class Color(enum.IntEnum):
    RED = 1


class Name(str):
    pass


Pair = namedtuple("Pair", "a b")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Color.RED, 1),
        (Name("x"), "x"),
        (OrderedDict(a=1), {"a": 1}),
        (Pair(1, 2), (1, 2)),
        (bytearray(b"ab"), b"ab"),
        (memoryview(b"cd"), b"cd"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_subclasses_of_builtins_are_written_as_their_base(value: Any, expected: Any) -> None:
    assert same(roundtrip(value), expected)


# --- states and NOT_PERSISTED -------------------------------------------------------------


def test_not_persisted_comes_back_as_the_singleton() -> None:
    back = roundtrip([states.NOT_PERSISTED, {"r": states.NOT_PERSISTED}])
    assert back[0] is states.NOT_PERSISTED
    assert back[1]["r"] is states.NOT_PERSISTED


def test_states_keep_every_slot() -> None:
    cases: list[states.State] = [
        states.Scheduled("later", start_time=1_700_000_000_000_000_000),
        states.Paused("wait", start_time=5),
        states.Retrying("again", ValueError("x"), start_time=9, run_count=3),
        states.Looped("loop", result=[1], loop_count=7),
        states.Cached(
            "hit",
            result={"a": (1, 2)},
            cached_inputs={"x": Decimal("1.5")},
            cached_parameters={"p": datetime(2024, 1, 1)},
            cached_result_expiration=123,
        ),
        states.Mapped(
            "m", map_states=[states.Success(result=1), states.Failed(result=KeyError(2))]
        ),
        states.Mapped("not loaded", n_map_states=5),
        states.Pending(result=states.NOT_PERSISTED),
    ]
    for state in cases:
        back = roundtrip(state)
        assert type(back) is type(state)
        assert back == state
        assert same(back, state), state
    mapped = roundtrip(cases[5])
    assert mapped.n_map_states == 2 and mapped.result[0] == 1
    assert isinstance(mapped.map_states[1].result, KeyError)
    assert roundtrip(cases[6]).n_map_states == 5


def test_a_state_subclass_outside_statecore_is_written_as_its_statecore_base() -> None:
    class MySuccess(states.Success):
        __slots__ = ()

    back = roundtrip(MySuccess("done", 1))
    assert type(back) is states.Success
    assert back == states.Success("done", 1)


def test_a_state_name_this_statecore_does_not_know_is_a_clear_error() -> None:
    forged = msgpack.ExtType(17, packb(["Exploded", None, None, {}]))
    with pytest.raises(UnknownState, match="Exploded"):
        unpackb(packb(forged))


# --- exceptions ---------------------------------------------------------------------------


class CustomError(Exception):
    pass


class NoArgsError(Exception):
    def __str__(self) -> str:
        return "told by __str__"


def raise_and_catch(exc: BaseException) -> BaseException:
    def failing_task_body() -> None:
        raise exc

    try:
        failing_task_body()
    except BaseException as caught:
        return caught
    raise AssertionError("not raised")


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad", 1, (2, 3)),
        KeyError("k"),
        ZeroDivisionError(),
        FileNotFoundError(2, "No such file", "/tmp/x"),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
        StopIteration({"v": 1}),
        ExceptionGroup("two", [ValueError(1), KeyError(2)]),
        KeyboardInterrupt(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_builtin_exceptions_are_rebuilt_exactly(exc: BaseException) -> None:
    back = roundtrip(exc)
    assert type(back) is type(exc)
    assert same(back.args, exc.args)
    assert str(back) == str(exc)


def test_os_error_fields_are_rebuilt() -> None:
    back = roundtrip(FileNotFoundError(2, "No such file", "/tmp/x"))
    assert (back.errno, back.strerror, back.filename) == (2, "No such file", "/tmp/x")
    assert str(back) == "[Errno 2] No such file: '/tmp/x'"
    moved = roundtrip(OSError(18, "Cross-device link", "a", None, "b"))
    assert (type(moved), moved.filename, moved.filename2) == (OSError, "a", "b")


def test_traceback_text_is_kept() -> None:
    exc = raise_and_catch(ValueError("boom"))
    back = roundtrip(exc)
    assert back.traceback_text.startswith("Traceback (most recent call last)")
    assert "failing_task_body" in back.traceback_text
    assert "ValueError: boom" in back.traceback_text
    # written again (no live traceback now), the text is kept
    assert roundtrip(back).traceback_text == back.traceback_text


def test_other_exception_classes_become_task_error() -> None:
    exc = raise_and_catch(CustomError("failed", 42, [1, (2,)]))
    back = roundtrip(exc)
    assert type(back) is TaskError
    assert back.type_name == f"{__name__}.CustomError"
    assert back.args == ("failed", 42, [1, (2,)])
    assert "failing_task_body" in back.traceback_text
    again = roundtrip(back)
    assert type(again) is TaskError
    assert (again.type_name, again.args) == (back.type_name, back.args)
    assert again.traceback_text == back.traceback_text


def test_task_error_round_trips_as_itself() -> None:
    exc = TaskError("pkg.Boom", "x", 1, traceback_text="Traceback ...")
    back = roundtrip(exc)
    assert type(back) is TaskError
    assert (back.type_name, back.args, back.traceback_text) == (
        "pkg.Boom",
        ("x", 1),
        "Traceback ...",
    )


def test_a_local_class_keeps_its_qualified_name() -> None:
    class Local(Exception):
        pass

    back = roundtrip(Local("x"))
    assert back.type_name == f"{__name__}.{Local.__qualname__}"
    assert "<locals>" in back.type_name


def test_an_argument_that_cannot_be_written_becomes_its_repr() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque 7>"

    back = roundtrip(ValueError("x", Opaque(), 3))
    assert type(back) is ValueError
    assert back.args == ("x", "<Opaque 7>", 3)


def test_a_message_from_str_is_kept_when_there_are_no_args() -> None:
    back = roundtrip(NoArgsError())
    assert type(back) is TaskError
    assert str(back) == "told by __str__"


@pytest.mark.parametrize(
    ("module", "qualname"),
    [
        ("os", "system"),
        ("builtins", "eval"),
        ("builtins", "print"),
        ("statecore.signals", "states"),
        ("statecore_never_imported", "Boom"),
    ],
)
def test_decoding_never_imports_or_calls_what_the_log_names(
    module: str, qualname: str, capsys: pytest.CaptureFixture[str]
) -> None:
    forged = msgpack.ExtType(18, packb([module, qualname, [packb("echo pwned")], "", "", None]))
    back = unpackb(packb(forged))
    assert type(back) is TaskError
    assert back.type_name == f"{module}.{qualname}"
    assert back.args == ("echo pwned",)
    assert capsys.readouterr().out == ""
    assert "statecore_never_imported" not in sys.modules


# --- signals ------------------------------------------------------------------------------

STATE_SIGNALS = [
    cls for cls in signals.SIGNAL_CLASSES.values() if issubclass(cls, signals.StateSignal)
]


def test_the_timeout_signal_round_trips() -> None:
    back = unpackb(packb(signals.TaskTimeoutSignal("Execution timed out.")))
    assert type(back) is signals.TaskTimeoutSignal
    assert back.args == ("Execution timed out.",)


@pytest.mark.parametrize("cls", STATE_SIGNALS, ids=lambda c: c.__name__)
def test_signals_are_rebuilt_with_the_signal_as_their_result(
    cls: type[signals.StateSignal],
) -> None:
    back = roundtrip(raise_and_catch(cls("why")))
    assert type(back) is cls
    assert back.args == ("why",) and back.message == "why"
    assert type(back.state) is cls.state_class
    assert back.state.message == "why"
    if cls is signals.LOOP:  # Prefect 1: a LOOP without a result carries its own text
        assert back.state.result == "LOOP('why')"
    else:
        assert back.state.result is back
    assert "failing_task_body" in back.traceback_text


@pytest.mark.parametrize("cls", STATE_SIGNALS, ids=lambda c: c.__name__)
def test_signals_keep_an_explicit_result(cls: type[signals.StateSignal]) -> None:
    back = roundtrip(cls("why", result=(1, "r")))
    assert type(back) is cls
    assert back.state.result == (1, "r")
    assert back.state.result is not back


def test_signal_state_fields_are_kept() -> None:
    retry = roundtrip(signals.RETRY("again", start_time=99, run_count=4))
    assert (retry.state.start_time, retry.state.run_count) == (99, 4)
    assert retry.state.result is retry
    loop = roundtrip(signals.LOOP("more", result=[1, 2], loop_count=3))
    assert (loop.state.result, loop.state.loop_count) == ([1, 2], 3)


def test_a_signal_whose_result_is_another_signal() -> None:
    back = roundtrip(signals.SUCCESS("outer", result=signals.SKIP("inner")))
    inner = back.state.result
    assert type(inner) is signals.SKIP
    assert inner.state.result is inner


def test_endrun_with_a_failed_state() -> None:
    exc = signals.ENDRUN(states.Failed("boom", result=ValueError("x")))
    back = roundtrip(exc)
    assert type(back) is signals.ENDRUN
    assert type(back.state) is states.Failed
    assert back.state == states.Failed("boom", result=ValueError("x"))
    assert back.args == (back.state,)


def test_a_signal_subclass_outside_statecore_becomes_task_error() -> None:
    class MySkip(signals.SKIP):
        pass

    back = roundtrip(MySkip("x"))
    assert type(back) is TaskError and back.args == ("x",)


def test_a_signal_inside_a_state_inside_a_signal() -> None:
    skip = signals.SKIP("s")
    back = roundtrip(signals.ENDRUN(states.Skipped("s", result=skip)))
    assert type(back.state.result) is signals.SKIP
    assert back.state.result.state.result is back.state.result


# --- what cannot be written ---------------------------------------------------------------


class Unregistered:
    pass


@pytest.mark.parametrize(
    "value",
    [
        Unregistered(),
        [1, {"k": (Unregistered(),)}],
        {Unregistered},
        states.Success(result=Unregistered()),
    ],
    ids=["bare", "nested", "class", "in-a-state"],
)
def test_an_unwritable_value_names_its_type_and_what_to_do(value: Any) -> None:
    with pytest.raises(SerializationError) as info:
        packb(value)
    message = str(info.value)
    assert "Unregistered" in message or "builtins.type" in message
    assert "set checkpoint=False on the task" in message
    assert "statecore.serialization.register_serializer(...)" in message
    assert "enable_pickle" in message
    assert isinstance(info.value, TypeError)


def test_the_packer_is_clean_after_a_failure() -> None:
    with pytest.raises(SerializationError):
        packb(["x" * 10_000, (1, Unregistered())])
    assert packb([2]) == msgpack.packb([2])
    assert roundtrip((1, [2])) == (1, [2])


def test_a_value_that_contains_itself_is_a_serialization_error() -> None:
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(SerializationError, match="contains itself"):
        packb(looped)
    through_tuple: list[Any] = []
    through_tuple.append((through_tuple,))
    with pytest.raises(SerializationError):
        packb(through_tuple)


def test_an_unknown_extension_code_reads_back_unchanged() -> None:
    raw = packb(msgpack.ExtType(99, b"\x01\x02"))
    back = unpackb(raw)
    assert back == msgpack.ExtType(99, b"\x01\x02")
    assert packb(back) == raw


# --- pickle: off unless asked for ---------------------------------------------------------


@dataclass
class Picklable:
    x: int


class PicklableChild(Picklable):
    pass


@pytest.fixture
def pickle_off() -> Iterator[None]:
    yield
    disable_pickle(Picklable)
    disable_pickle()


def test_pickle_is_off_by_default(pickle_off: None) -> None:
    with pytest.raises(SerializationError, match="Picklable"):
        packb(Picklable(1))


def test_enable_pickle_for_a_class(pickle_off: None) -> None:
    enable_pickle(Picklable)
    assert roundtrip([Picklable(1), PicklableChild(2)]) == [Picklable(1), PicklableChild(2)]
    with pytest.raises(SerializationError):
        packb(Unregistered())  # only that class
    data = packb(Picklable(3))
    disable_pickle(Picklable)
    with pytest.raises(SerializationError):
        packb(Picklable(1))
    back = unpackb(data)  # not opted in any more: never unpickled
    assert isinstance(back, msgpack.ExtType)
    assert packb(back) == data


def test_enable_pickle_as_the_global_fallback(pickle_off: None) -> None:
    enable_pickle()
    assert roundtrip({"a": Picklable(1)}) == {"a": Picklable(1)}
    back = roundtrip(ValueError(Picklable(2)))  # exceptions keep their own codec
    assert type(back) is ValueError and back.args == (Picklable(2),)
    with pytest.raises(SerializationError, match="cannot pickle"):
        packb(lambda: None)
    disable_pickle()
    with pytest.raises(SerializationError):
        packb(Picklable(1))


# --- register_serializer ------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    x: int
    y: int
    label: str = ""


class Point3(Point):
    pass


class Shape(abc.ABC):  # noqa: B024
    pass


class Square:
    def __init__(self, side: int) -> None:
        self.side = side


Shape.register(Square)


@pytest.fixture
def point_codec() -> Iterator[None]:
    register_serializer(
        Point,
        code=USER_CODE_MIN,
        encode=lambda p: (p.x, p.y, p.label),
        decode=lambda v: Point(*v),
    )
    yield
    unregister_serializer(Point)
    unregister_serializer(Point3)
    unregister_serializer(Shape)


def test_register_a_user_type(point_codec: None) -> None:
    value = {Point(1, 2): [Point(3, 4, "é"), (Point(5, 6),)]}
    assert same(roundtrip(value), value)
    assert roundtrip(Point3(1, 2)) == Point(1, 2)  # a subclass uses its base's serializer


def test_the_encoded_value_may_hold_registered_types(point_codec: None) -> None:
    register_serializer(
        Point3,
        code=USER_CODE_MAX,
        encode=lambda p: {"at": (p.x, p.y), "when": datetime(2024, 1, 1), "base": Point(0, 0)},
        decode=lambda v: Point3(*v["at"], label=str(v["when"].year + v["base"].x)),
    )
    assert roundtrip(Point3(1, 2)) == Point3(1, 2, "2024")


def test_registering_clears_what_was_looked_up_before(point_codec: None) -> None:
    with pytest.raises(SerializationError):
        packb(Square(2))
    register_serializer(Shape, code=70, encode=lambda s: s.side, decode=Square)
    assert roundtrip(Square(3)).side == 3  # found by isinstance (a virtual subclass)
    unregister_serializer(Shape)
    with pytest.raises(SerializationError):
        packb(Square(2))


def test_a_code_used_by_another_class_is_refused(point_codec: None) -> None:
    with pytest.raises(ValueError, match=f"code {USER_CODE_MIN} is already used by .*Point"):
        register_serializer(Square, code=USER_CODE_MIN, encode=vars, decode=Square)
    with pytest.raises(ValueError, match="already has a serializer"):
        register_serializer(Point, code=USER_CODE_MIN + 1, encode=vars, decode=Square)
    with pytest.raises(ValueError, match="already has a serializer"):
        enable_pickle(Point)
    register_serializer(  # the same class again under its own code: replaced
        Point, code=USER_CODE_MIN, encode=lambda p: [p.x, p.y], decode=lambda v: Point(*v)
    )
    assert roundtrip(Point(1, 2, "dropped")) == Point(1, 2)


@pytest.mark.parametrize("code", [-1, 0, 18, USER_CODE_MIN - 1, USER_CODE_MAX + 1])
def test_codes_outside_the_user_range_are_refused(code: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        register_serializer(Square, code=code, encode=vars, decode=Square)


@pytest.mark.parametrize("cls", [tuple, datetime, int, dict, states.State, BaseException, bool])
def test_types_with_a_builtin_encoding_cannot_be_replaced(cls: type) -> None:
    with pytest.raises(ValueError, match="built-in encoding"):
        register_serializer(cls, code=80, encode=repr, decode=repr)


def test_a_code_this_process_has_not_registered_reads_back_raw(point_codec: None) -> None:
    data = packb([Point(1, 2)])
    unregister_serializer(Point)
    back = unpackb(data)
    assert back == [msgpack.ExtType(USER_CODE_MIN, packb((1, 2, "")))]
    assert packb(back) == data


# --- scrub --------------------------------------------------------------------------------

SECRETS = {"TOKEN": "s3cr3t", "PASSWORD": "hunter2"}


def test_scrub_nested_structures() -> None:
    value = {
        "url": "https://user:s3cr3t@host",
        "s3cr3t-key": [1, ("x", "hunter2hunter2"), {"a", "s3cr3t"}, frozenset({"hunter2"})],
        "raw": b"token=s3cr3t",
        "ok": ["untouched", 3],
    }
    clean = scrub(value, SECRETS)
    assert clean == {
        "url": "https://user:<secret:TOKEN>@host",
        "<secret:TOKEN>-key": [
            1,
            ("x", "<secret:PASSWORD><secret:PASSWORD>"),
            {"a", "<secret:TOKEN>"},
            frozenset({"<secret:PASSWORD>"}),
        ],
        "raw": b"token=<secret:TOKEN>",
        "ok": ["untouched", 3],
    }
    assert clean["ok"] is value["ok"]  # only what held a secret is new
    assert value["url"] == "https://user:s3cr3t@host"  # the original is untouched


def test_scrub_returns_the_same_object_when_nothing_matched() -> None:
    value = {"a": [1, ("b", {"c"})], "e": ValueError("x"), "s": states.Success(result="y")}
    assert scrub(value, SECRETS) is value
    assert scrub(value, {}) is value
    assert scrub(value, {"EMPTY": ""}) is value


def test_scrub_prefers_the_longest_secret() -> None:
    secrets = {"SHORT": "abc", "LONG": "abcdef"}
    assert scrub_text("xabcdefx abc", secrets) == "x<secret:LONG>x <secret:SHORT>"
    assert scrub_text("nothing", secrets) == "nothing"


def test_scrub_keeps_namedtuples_and_handles_cycles() -> None:
    assert scrub(Pair("hunter2", 1), SECRETS) == Pair("<secret:PASSWORD>", 1)
    assert type(scrub(Pair("hunter2", 1), SECRETS)) is Pair
    looped: list[Any] = ["hunter2"]
    looped.append(looped)
    clean = scrub(looped, SECRETS)
    assert clean[0] == "<secret:PASSWORD>"


def test_scrub_exceptions_args_attributes_and_traceback() -> None:
    exc = raise_and_catch(CustomError("login failed for hunter2", 1))
    exc.detail = "s3cr3t"  # type: ignore[attr-defined]
    clean = scrub(exc, SECRETS)
    assert type(clean) is CustomError
    assert clean.args == ("login failed for <secret:PASSWORD>", 1)
    assert clean.detail == "<secret:TOKEN>"  # type: ignore[attr-defined]
    assert "hunter2" not in clean.traceback_text  # type: ignore[attr-defined]
    assert "failing_task_body" in clean.traceback_text  # type: ignore[attr-defined]
    assert exc.args[0] == "login failed for hunter2"
    written = packb(clean)
    assert b"hunter2" not in written and b"s3cr3t" not in written
    assert roundtrip(clean).args == clean.args


def test_scrub_a_secret_only_in_the_traceback() -> None:
    def leak(password: str) -> None:
        raise ValueError("no")  # the frame's source line holds no secret, the chain does

    try:
        try:
            raise KeyError("hunter2")
        except KeyError:
            leak("x")
    except ValueError as caught:
        exc = caught
    clean = scrub(exc, SECRETS)
    assert clean is not exc and clean.args == ("no",)
    assert "<secret:PASSWORD>" in clean.traceback_text  # type: ignore[attr-defined]
    assert b"hunter2" not in packb(clean)


def test_scrub_an_os_error_filename() -> None:
    exc = FileNotFoundError(2, "No such file", "/home/hunter2/key")
    clean = scrub(exc, SECRETS)
    assert type(clean) is FileNotFoundError
    assert (clean.errno, clean.filename) == (2, "/home/<secret:PASSWORD>/key")
    assert b"hunter2" not in packb(clean)
    assert roundtrip(clean).filename == "/home/<secret:PASSWORD>/key"


def test_scrub_a_signal_keeps_its_state_pointing_at_itself() -> None:
    skip = signals.SKIP("skipped for hunter2")
    clean = scrub(skip, SECRETS)
    assert type(clean) is signals.SKIP
    assert clean.args == ("skipped for <secret:PASSWORD>",)
    assert clean.message == "skipped for <secret:PASSWORD>"
    assert clean.state.message == "skipped for <secret:PASSWORD>"
    assert clean.state.result is clean
    assert skip.state.result is skip and skip.message == "skipped for hunter2"


def test_scrub_states() -> None:
    state = states.Cached(
        "cached hunter2",
        result=["s3cr3t"],
        cached_inputs={"pw": "hunter2"},
        cached_result_expiration=5,
    )
    clean = scrub(state, SECRETS)
    assert type(clean) is states.Cached
    assert clean.message == "cached <secret:PASSWORD>"
    assert clean.result == ["<secret:TOKEN>"]
    assert clean.cached_inputs == {"pw": "<secret:PASSWORD>"}
    assert clean.cached_result_expiration == 5 and clean.cached_parameters is None
    assert state.message == "cached hunter2"


def test_scrub_a_registered_type_through_its_serializer(point_codec: None) -> None:
    clean = scrub({"p": Point(1, 2, "hunter2")}, SECRETS)
    assert clean == {"p": Point(1, 2, "<secret:PASSWORD>")}
    untouched = Point(1, 2, "fine")
    assert scrub(untouched, SECRETS) is untouched


def test_scrub_ignores_values_that_are_not_strings() -> None:
    secrets: dict[str, Any] = {"N": 123, "E": "", "P": "hunter2"}
    assert scrub(["123", "hunter2"], secrets) == ["123", "<secret:P>"]
