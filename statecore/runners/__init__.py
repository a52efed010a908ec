"""The imperative shell: runners, resume, replay, rerun, scheduling, leases and the CLI."""

from __future__ import annotations

from statecore.runners.dask import DaskRunner
from statecore.runners.local import LocalRunner, replay, rerun, resume
from statecore.runners.scheduling import run_on_schedule

__all__ = ["DaskRunner", "LocalRunner", "replay", "rerun", "resume", "run_on_schedule"]
