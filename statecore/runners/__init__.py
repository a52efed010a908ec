"""The imperative shell: runners, resume, replay, rerun, leases and the command line."""

from __future__ import annotations

from statecore.runners.dask import DaskRunner
from statecore.runners.local import LocalRunner, replay, resume
from statecore.runners.rerun import rerun

__all__ = ["DaskRunner", "LocalRunner", "replay", "rerun", "resume"]
