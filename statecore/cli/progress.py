"""The progress bar ``statecore run``, ``resume`` and ``rerun`` draw while a run works."""

from __future__ import annotations

import sys
import threading

from rich.console import Console

from statecore.backends.base import Store
from statecore.fold import RunView
from statecore.states import Mapped

__all__ = ["RunProgress"]


class RunProgress:
    """A finished/total bar for a run in progress, fed by polling the store.

    It starts drawing only when stdout is a terminal and the run has taken more than
    half a second; it reads the log the driver writes (so it lags by at most one
    group-commit window) and never writes anything.
    """

    DELAY = 0.5
    EVERY = 0.25

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if sys.stdout.isatty():
            self._thread = threading.Thread(
                target=self._loop, name="statecore-progress", daemon=True
            )

    def __enter__(self) -> RunProgress:
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _counts(self, view: RunView) -> tuple[int, int]:
        done = total = 0
        for i, run in enumerate(view.runs):
            runs = view.children.get(i) if isinstance(run.state, Mapped) else None
            for r in runs if runs is not None else [run]:
                total += 1
                done += r.state.is_finished() and not r.state.is_looped()
        return done, total

    def _loop(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        if self._stop.wait(self.DELAY):
            return
        view = RunView(self.run_id)
        columns = ("tasks", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
            task = bar.add_task("tasks", total=None)
            while True:
                try:
                    for event in self.store.read(self.run_id, after=view.head):
                        view.apply(event)
                except Exception:  # the bar is a convenience; the run reports errors
                    return
                done, total = self._counts(view)
                bar.update(task, completed=done, total=total or None)
                if self._stop.wait(self.EVERY):
                    return
