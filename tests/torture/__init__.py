"""Torture harness: flows, a driver script and kill/race helpers shared by
``tests/test_torture_kill.py``, ``tests/test_races.py`` and ``scripts/torture.py``."""
