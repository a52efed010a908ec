"""Out-of-scope rules for the flow.run()-driven tests of core/test_flow.py, core/test_task.py
and core/test_task_map.py: (node-id regex, reason), first match decides.

A rule names a real difference, decided from the test's id and never from its outcome;
each difference a user could meet is also pinned by tests/test_prefect1_differences*.py.
(Tests of these files that never call flow.run() are out of scope by the script's own
NOT_RUN rule.)
"""

from __future__ import annotations

RULES: list[tuple[str, str]] = []
