"""Tooling for tests of statecore itself and of code built on it.

* :class:`StoreContractTests`: the conformance suite every store backend subclasses.
* :func:`store_state_machine`: a Hypothesis state machine that checks stores agree.
* :func:`states`, :func:`upstream_states`, :func:`flows`: Hypothesis strategies for
  property-testing triggers and whole flows.

The Hypothesis parts need ``pip install 'statecore[testing]'``; they are imported on
first use, so the conformance suite works without Hypothesis. This package is test
tooling, so unlike the core it may start threads and touch stores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from statecore.testing.store_machine import store_state_machine
from statecore.testing.stores import StoreContractTests

if TYPE_CHECKING:
    from statecore.testing.strategies import flows, states, upstream_states

__all__ = ["StoreContractTests", "flows", "states", "store_state_machine", "upstream_states"]


def __getattr__(name: str) -> Any:
    if name in ("flows", "states", "upstream_states"):
        from statecore.testing import strategies

        return getattr(strategies, name)
    raise AttributeError(f"module 'statecore.testing' has no attribute {name!r}")
