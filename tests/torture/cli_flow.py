"""The torture flow as ``FILE.py:FLOW`` for the ``statecore`` command line."""

from tests.torture.flows import torture_flow as flow

__all__ = ["flow"]
