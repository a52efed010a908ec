"""Flows and a driver script for the crash, lease and store-outage tests.

The flows live in an importable module so that a subprocess (``python -m
tests.crash_flows.drive``) and the test process build the very same graph: same task
keys, same structural fingerprint, same per-task code hashes.
"""
