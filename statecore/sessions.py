"""Driver sessions: who drove a run when, and which sessions ended in a crash.

Each process that drives a run logs a ``session-start`` note (owner, host, pid, lease
epoch, statecore version, why: ``run``, ``resume`` or ``takeover``) and, when it stops
cleanly, a ``session-end`` note with its reason. A session with no end is a crash; the
next driver logs a ``session-lost`` note with the time the dead one was last known alive
and ends its open attempts there. Everything here is a pure read of a folded view.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statecore.fold import RunView

__all__ = ["LostSession", "Session", "iso_ns", "open_session", "run_status", "sessions"]


@dataclass(frozen=True, slots=True)
class LostSession:
    """A driver session that never ended, and when its driver was last known alive."""

    owner: str
    last_alive: int


@dataclass(frozen=True, slots=True)
class Session:
    """One driver's session of a run, as the log tells it.

    Attributes:
        owner: the driver, ``host:pid:token``.
        why: ``run``, ``resume`` or ``takeover``.
        epoch: its lease epoch.
        started: UTC ns of its session-start note.
        ended: UTC ns of its end: its session-end note, or for a crash the time it was
            last known alive (from the next session's session-lost note); None while open.
        reason: how it ended (``finished``, ``not finished``, ``interrupted``, ``error``,
            ``crashed``), None while open.
        data: the session-start note's data (host, pid, version, lease_ttl ...).
    """

    owner: str
    why: str
    epoch: int | None
    started: int
    ended: int | None
    reason: str | None
    data: dict[str, Any]

    @property
    def crashed(self) -> bool:
        """True when the session ended without its driver saying so."""
        return self.reason == "crashed"


def iso_ns(ns: int) -> str:
    """UTC nanoseconds as an ISO 8601 time (milliseconds)."""
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


def sessions(view: RunView) -> list[Session]:
    """Every driver session of the run, in log order."""
    out: list[Session] = []
    current: dict[str, Any] | None = None

    def close(ended: int | None, reason: str | None) -> None:
        nonlocal current
        if current is not None:
            out.append(Session(ended=ended, reason=reason, **current))
            current = None

    for ts, note in view.notes:
        data = note.data if isinstance(note.data, dict) else {}
        if note.code == "session-start":
            close(None, None)  # a start with no end before it: a crash never noted
            current = {
                "owner": str(data.get("owner", "")),
                "why": str(data.get("why", "")),
                "epoch": data.get("epoch") if isinstance(data.get("epoch"), int) else None,
                "started": ts,
                "data": dict(data),
            }
        elif note.code == "session-end":
            close(ts, str(data.get("reason", "")))
        elif note.code == "session-lost":
            alive = data.get("last_alive")
            if out and out[-1].reason is None and current is None:
                last = out.pop()
                current = {f: getattr(last, f) for f in ("owner", "why", "epoch", "started")}
                current["data"] = last.data
            close(alive if isinstance(alive, int) else ts, "crashed")
    if current is not None:
        out.append(Session(ended=None, reason=None, **current))
    return out


def open_session(view: RunView) -> tuple[str, Any] | None:
    """The owner and lease ttl of the run's last session if it never ended, else None."""
    found: tuple[str, Any] | None = None
    for _, note in view.notes:
        data = note.data if isinstance(note.data, dict) else {}
        if note.code == "session-start":
            found = (str(data.get("owner", "")), data.get("lease_ttl"))
        elif note.code in ("session-end", "session-lost"):
            found = None
    return found


def run_status(view: RunView, *, holder_alive: bool | None) -> str:
    """A run's state in words, for ``show`` and ``runs``.

    ``holder_alive`` says whether a live driver holds the run's lease (None: unknown).
    A run whose flow is not finished and whose last session never ended is
    ``interrupted (driver gone since T)`` once no live driver holds it.
    """
    state = view.flow_state.name
    if view.flow_state.is_finished():
        return state
    last = sessions(view)
    if last and last[-1].ended is None:
        if holder_alive:
            return f"{state} (driven by {last[-1].owner})"
        alive = view.last_event.ts if view.last_event is not None else last[-1].started
        return f"interrupted (driver gone since {iso_ns(alive)})"
    if last and last[-1].reason == "interrupted":
        return f"interrupted ({iso_ns(last[-1].ended or last[-1].started)})"
    return state
