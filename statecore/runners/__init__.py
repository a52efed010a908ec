"""The imperative shell: runners, resume, replay, leases and the command line."""

from __future__ import annotations

from statecore.runners.local import LocalRunner, replay, resume

__all__ = ["LocalRunner", "replay", "resume"]
