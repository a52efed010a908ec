"""Torture harness: flows, a driver script and kill/race helpers shared by
``tests/runners/test_torture_kill.py``, ``tests/runners/test_races.py`` and
``scripts/torture.py``."""
