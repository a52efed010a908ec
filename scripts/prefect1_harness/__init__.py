"""Harness that runs Prefect 1.4.1's own tests against statecore (see scripts/prefect1_tests.py).

Nothing here is part of statecore: it is installed into a temporary copy of Prefect's tests at
run time. ``plugin`` is the pytest plugin (import setup, out-of-scope marking, outcome
recording), ``fixtures`` the conftest that replaces Prefect's own ``tests/conftest.py``.
"""
