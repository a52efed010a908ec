"""Cache validators, as in Prefect 1: decide whether a cached result may be reused.

A validator is called as ``validator(cached_state, inputs, parameters)`` for a candidate
whose expiration (``cache_for``) has not passed; ``decide`` checks the expiration against
the time it is given, so validators stay pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from statecore.states import Cached

__all__ = [
    "all_inputs",
    "all_parameters",
    "duration_only",
    "never_use",
    "partial_inputs_only",
    "partial_parameters_only",
]

Validator = Callable[[Cached, Mapping[str, Any], Mapping[str, Any]], bool]


def never_use(state: Cached, inputs: Mapping[str, Any], parameters: Mapping[str, Any]) -> bool:
    """Never reuse a cached result."""
    return False


def duration_only(state: Cached, inputs: Mapping[str, Any], parameters: Mapping[str, Any]) -> bool:
    """Reuse any unexpired result (the default)."""
    return True


def all_inputs(state: Cached, inputs: Mapping[str, Any], parameters: Mapping[str, Any]) -> bool:
    """Reuse an unexpired result computed from the same inputs."""
    return dict(state.cached_inputs or {}) == dict(inputs)


def all_parameters(state: Cached, inputs: Mapping[str, Any], parameters: Mapping[str, Any]) -> bool:
    """Reuse an unexpired result computed with the same flow parameters."""
    return dict(state.cached_parameters or {}) == dict(parameters)


def partial_parameters_only(validate_on: Iterable[str] | None = None) -> Validator:
    """Reuse an unexpired result whose parameters named in ``validate_on`` are equal."""
    names = list(validate_on or ())

    def _partial_parameters_only(
        state: Cached, inputs: Mapping[str, Any], parameters: Mapping[str, Any]
    ) -> bool:
        cached = state.cached_parameters or {}
        return all(cached.get(n) == parameters.get(n) for n in names)

    return _partial_parameters_only


def partial_inputs_only(validate_on: Iterable[str] | None = None) -> Validator:
    """Reuse an unexpired result whose inputs named in ``validate_on`` are equal."""
    names = list(validate_on or ())

    def _partial_inputs_only(
        state: Cached, inputs: Mapping[str, Any], parameters: Mapping[str, Any]
    ) -> bool:
        cached = state.cached_inputs or {}
        return all(cached.get(n) == inputs.get(n) for n in names)

    return _partial_inputs_only
