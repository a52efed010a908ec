"""Key naming for the Redis store: run hash tags, per-run keys and run index members.

The layout itself is documented in :mod:`statecore.backends.redis`.
"""

from __future__ import annotations

import base64
import re

from statecore.backends._redis_codec import text, utf8

_READABLE_ID = re.compile(r"[A-Za-z0-9._:@+\-]{1,128}")
INT64 = 2**63


def run_tag(run_id: str) -> str:
    """The hash tag of ``run_id``: the id itself if readable, else ``=`` + base64url.

    >>> run_tag("run-42")
    'run-42'
    >>> run_tag("a}b")
    '=YX1i'
    """
    if _READABLE_ID.fullmatch(run_id):
        return run_id
    return "=" + base64.urlsafe_b64encode(utf8(run_id)).rstrip(b"=").decode("ascii")


def run_keys(prefix: str, run_id: str) -> tuple[str, str, str]:
    """The (events, meta, lease) keys of ``run_id``."""
    base = f"{prefix}:{{{run_tag(run_id)}}}:"
    return base + "events", base + "meta", base + "lease"


def cancel_key(prefix: str, run_id: str) -> str:
    """The key of ``run_id``'s cancellation request, in the run's slot."""
    return f"{prefix}:{{{run_tag(run_id)}}}:cancel"


def cache_key(prefix: str, key: str) -> str:
    return f"{prefix}:cache:{{{run_tag(key)}}}"


def index_key(prefix: str) -> str:
    return f"{prefix}:runs"


def index_member(started: int, run_id: str) -> bytes:
    if not -INT64 <= started < INT64:
        raise ValueError(f"run {run_id!r}: start time {started} is outside 64-bit nanoseconds")
    return b"%016x:%s" % (started + INT64, utf8(run_id))


def split_member(member: bytes) -> tuple[int, str]:
    return int(member[:16], 16) - INT64, text(member[17:])
