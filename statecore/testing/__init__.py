"""Tooling for tests of statecore itself and of code built on it.

* :class:`StoreContractTests`: the conformance suite every store backend subclasses.
* :func:`store_state_machine`: a Hypothesis state machine that checks stores agree
  (needs ``pip install 'statecore[testing]'``).

This package is test tooling, so unlike the core it may start threads and touch stores.
"""

from __future__ import annotations

from statecore.testing.stores import StoreContractTests, store_state_machine
from statecore.testing.strategies import flows, states, upstream_states

__all__ = ["StoreContractTests", "flows", "states", "store_state_machine", "upstream_states"]
