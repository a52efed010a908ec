"""Pure Python by default; ``STATECORE_COMPILE=1`` compiles the hot path with mypyc
(the module list and the switch are in tools/statecore_build.py, the build backend)."""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tools"))

import statecore_build  # noqa: E402

if statecore_build.compiling():
    if statecore_build.asking_requirements:
        setup()  # setuptools only asks what the build needs; mypy is not installed yet
    else:
        try:
            from mypyc.build import mypycify
        except ImportError as exc:  # a build without isolation, in an environment without mypy
            needs = " ".join(f"'{r}'" for r in statecore_build.COMPILE_REQUIRES)
            raise SystemExit(f"STATECORE_COMPILE=1 needs mypyc: pip install {needs}") from exc

        setup(ext_modules=mypycify(statecore_build.HOT_PATH, opt_level="3", group_name="statecore"))
else:
    # A pure build: compiled modules an earlier STATECORE_COMPILE=1 build left beside the
    # sources (an editable install builds them in place) would shadow them. They go.
    for stale in statecore_build.compiled_files(ROOT):
        print(f"statecore: removing {stale.relative_to(ROOT)} (a pure build)")
        stale.unlink()
    setup()
