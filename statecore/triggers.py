"""Triggers: pure functions that decide, from its upstream states, whether a task runs.

A trigger takes a mapping from upstream :class:`~statecore.Edge` to
:class:`~statecore.states.State` and returns True, or raises ``TRIGGERFAIL``, ``SKIP``
or ``PAUSE``. A mapped upstream counts by its children, and each upstream state counts
once however many edges join the two tasks, as in Prefect 1. Triggers are plain,
picklable and pure; ``decide`` calls them, so they must not do I/O.

The examples below use a tiny helper that gives each state its own edge:

    >>> from statecore import states
    >>> def edges(*ss): return {i: s for i, s in enumerate(ss)}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from statecore import signals
from statecore.states import Mapped, State

__all__ = [
    "Trigger",
    "all_failed",
    "all_finished",
    "all_successful",
    "always_run",
    "any_failed",
    "any_successful",
    "manual_only",
    "not_all_skipped",
    "some_failed",
    "some_successful",
    "trigger_name",
]

Trigger = Callable[[Mapping[Any, State]], bool]


def _all_states(upstream_states: Mapping[Any, State]) -> list[State]:
    """Each distinct upstream state once, mapped parents expanded into their children."""
    seen: set[int] = set()
    out: list[State] = []
    for state in upstream_states.values():
        children: Iterable[State] = state.map_states if isinstance(state, Mapped) else (state,)
        for s in children:
            if id(s) not in seen:
                seen.add(id(s))
                out.append(s)
    return out


def all_finished(upstream_states: Mapping[Any, State]) -> bool:
    """Runs when every upstream task finished, whatever its outcome (alias ``always_run``).

    >>> all_finished(edges(states.Success(), states.Failed()))
    True
    >>> all_finished(edges(states.Pending()))
    Traceback (most recent call last):
    ...
    statecore.signals.TRIGGERFAIL: Trigger was "all_finished" but some of the upstream tasks were not finished.
    """  # noqa: E501
    if not all(s.is_finished() for s in _all_states(upstream_states)):
        raise signals.TRIGGERFAIL(
            'Trigger was "all_finished" but some of the upstream tasks were not finished.'
        )
    return True


always_run = all_finished


def manual_only(upstream_states: Mapping[Any, State]) -> bool:
    """Never runs by itself: pauses the task until it is approved.

    An approved task (state ``Resume``, from ``resume(..., approve=[task])``) runs
    without consulting this trigger again.

    >>> manual_only(edges(states.Success()))
    Traceback (most recent call last):
    ...
    statecore.signals.PAUSE: Trigger function is "manual_only"
    """
    raise signals.PAUSE('Trigger function is "manual_only"')


def all_successful(upstream_states: Mapping[Any, State]) -> bool:
    """Runs when every upstream task succeeded (Skipped counts as success). The default.

    >>> all_successful(edges(states.Success(), states.Skipped()))
    True
    >>> all_successful(edges(states.Success(), states.TriggerFailed()))
    Traceback (most recent call last):
    ...
    statecore.signals.TRIGGERFAIL: Trigger was "all_successful" but some of the upstream tasks failed.
    """  # noqa: E501
    for s in _all_states(upstream_states):  # a loop: the default trigger runs per task
        if not s.is_successful():
            raise signals.TRIGGERFAIL(
                'Trigger was "all_successful" but some of the upstream tasks failed.'
            )
    return True


def all_failed(upstream_states: Mapping[Any, State]) -> bool:
    """Runs when every upstream task failed (TriggerFailed and TimedOut count as failed).

    >>> all_failed(edges(states.Failed(), states.TimedOut()))
    True
    >>> all_failed(edges(states.Failed(), states.Skipped()))
    Traceback (most recent call last):
    ...
    statecore.signals.TRIGGERFAIL: Trigger was "all_failed" but some of the upstream tasks succeeded.
    """  # noqa: E501
    if not all(s.is_failed() for s in _all_states(upstream_states)):
        raise signals.TRIGGERFAIL(
            'Trigger was "all_failed" but some of the upstream tasks succeeded.'
        )
    return True


def any_successful(upstream_states: Mapping[Any, State]) -> bool:
    """Runs when at least one upstream task succeeded, or when there are none.

    >>> any_successful(edges(states.Failed(), states.Success()))
    True
    >>> any_successful({})
    True
    """
    if upstream_states and not any(s.is_successful() for s in _all_states(upstream_states)):
        raise signals.TRIGGERFAIL(
            'Trigger was "any_successful" but none of the upstream tasks succeeded.'
        )
    return True


def any_failed(upstream_states: Mapping[Any, State]) -> bool:
    """Runs when at least one upstream task failed, or when there are none.

    >>> any_failed(edges(states.Success(), states.Failed()))
    True
    >>> any_failed(edges(states.Skipped()))
    Traceback (most recent call last):
    ...
    statecore.signals.TRIGGERFAIL: Trigger was "any_failed" but none of the upstream tasks failed.
    """
    if upstream_states and not any(s.is_failed() for s in _all_states(upstream_states)):
        raise signals.TRIGGERFAIL('Trigger was "any_failed" but none of the upstream tasks failed.')
    return True


def not_all_skipped(upstream_states: Mapping[Any, State]) -> bool:
    """Runs when every upstream task succeeded and not all were skipped.

    When all were skipped (or there are none) the task is Skipped, not TriggerFailed.

    >>> not_all_skipped(edges(states.Success(), states.Skipped()))
    True
    >>> not_all_skipped(edges(states.Skipped()))
    Traceback (most recent call last):
    ...
    statecore.signals.SKIP: All upstreams were skipped
    """
    all_states = _all_states(upstream_states)
    if all(s.is_skipped() for s in all_states):
        raise signals.SKIP("All upstreams were skipped", result=None)
    if not all(s.is_successful() for s in all_states):
        raise signals.TRIGGERFAIL(
            'Trigger was "not_all_skipped" but some of the upstream tasks failed.'
        )
    return True


class _Threshold:
    """A picklable trigger counting upstream states that pass ``predicate``."""

    def __init__(
        self,
        name: str,
        at_least: float | None,
        at_most: float | None,
    ) -> None:
        self.name = name
        self.at_least = at_least
        self.at_most = at_most
        self.__name__ = name

    def _count(self, state: State) -> bool:
        return state.is_successful() if self.name == "some_successful" else state.is_failed()

    def __call__(self, upstream_states: Mapping[Any, State]) -> bool:
        if not upstream_states:
            return True
        all_states = _all_states(upstream_states)
        hits = sum(1 for s in all_states if self._count(s))
        n = len(all_states)
        low = self.at_least
        high = self.at_most
        min_num = 0.0 if low is None else (n * low if low < 1 else low)
        max_num = float(n) if high is None else (n * high if high < 1 else high)
        if not min_num <= hits <= max_num:
            raise signals.TRIGGERFAIL(f'Trigger was "{self.name}" but thresholds were not met.')
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Threshold) and (self.name, self.at_least, self.at_most) == (
            other.name,
            other.at_least,
            other.at_most,
        )

    def __hash__(self) -> int:
        return hash((self.name, self.at_least, self.at_most))

    def __repr__(self) -> str:
        return f"{self.name}(at_least={self.at_least!r}, at_most={self.at_most!r})"


def some_successful(at_least: float | None = None, at_most: float | None = None) -> Trigger:
    """Runs when the number of successful upstream states is within bounds.

    A bound below 1 is a fraction of the number of upstream states. No upstream: runs.

    >>> some_successful(at_least=2)(edges(states.Success(), states.Success(), states.Failed()))
    True
    >>> failed = [states.Failed() for _ in range(3)]  # distinct states: each counts
    >>> some_successful(at_least=0.5)(edges(states.Success(), *failed))
    Traceback (most recent call last):
    ...
    statecore.signals.TRIGGERFAIL: Trigger was "some_successful" but thresholds were not met.
    """
    return _Threshold("some_successful", at_least, at_most)


def some_failed(at_least: float | None = None, at_most: float | None = None) -> Trigger:
    """Runs when the number of failed upstream states is within bounds.

    >>> some_failed(at_most=0)(edges(states.Success(), states.Failed()))
    Traceback (most recent call last):
    ...
    statecore.signals.TRIGGERFAIL: Trigger was "some_failed" but thresholds were not met.
    """
    return _Threshold("some_failed", at_least, at_most)


def trigger_name(trigger: Callable[..., Any]) -> str:
    """A stable description of a trigger, recorded in the run's first event."""
    if isinstance(trigger, _Threshold):
        return repr(trigger)
    module = getattr(trigger, "__module__", "") or ""
    name = getattr(trigger, "__qualname__", None) or getattr(trigger, "__name__", repr(trigger))
    if module == __name__:
        return str(name)
    return f"{module}.{name}"
