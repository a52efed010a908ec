"""Times and durations on the command line: ``--since``/``--until``/``--before`` values
in, durations out.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click

__all__ = ["format_duration", "parse_time"]

_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_time(text: str, *, now: datetime | None = None) -> int:
    """A time option as UTC ns: ISO 8601 (naive means UTC) or an age such as ``7d``.

    Times beyond what 64-bit nanoseconds hold (after 2262) are clamped to the limit.

    Raises:
        click.BadParameter: neither form.

    Example:
        >>> from datetime import UTC, datetime
        >>> parse_time("1970-01-01T00:00:01Z")
        1000000000
        >>> parse_time("1d", now=datetime(1970, 1, 2, tzinfo=UTC))
        0
    """
    text = text.strip()
    age = _AGE.fullmatch(text)
    if age:
        base = now or datetime.now(UTC)
        when = base - timedelta(seconds=float(age[1]) * _AGE_UNITS[age[2]])
    else:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise click.BadParameter(
                f"{text!r} is not an ISO 8601 time (2024-05-01, 2024-05-01T12:00:00+02:00) "
                "or an age (30m, 12h, 7d)"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    ns = (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000
    # Stores keep times as signed 64-bit nanoseconds (1677 to 2262): clamp to that range.
    return max(-(2**63), min(ns, 2**63 - 1))


def format_duration(ns: int | None) -> str:
    """A duration in ns, short and readable; empty for an unknown one.

    Example:
        >>> format_duration(1_500_000), format_duration(90 * 10**9)
        ('1.5ms', '90.00s')
        >>> format_duration(150 * 10**9), format_duration(None)
        ('2m30.0s', '')
    """
    if ns is None:
        return ""
    s = ns / 1e9
    if s < 1:
        return f"{s * 1000:.1f}ms"
    if s < 120:
        return f"{s:.2f}s"
    return f"{int(s // 60)}m{s % 60:04.1f}s"
