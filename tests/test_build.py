"""The two builds: pure Python, and the hot path compiled with mypyc (STATECORE_COMPILE=1).

CI runs the whole suite on each, saying which it expects in ``STATECORE_EXPECT_COMPILED``
(``1`` or ``0``); without it, the build under test must at least be whole: every module of
the hot path compiled, or none, and no compiled module older than its source.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import statecore_build  # noqa: E402

sys.path.remove(str(ROOT / "tools"))


def _module_name(source: str) -> str:
    return source.removesuffix(".py").replace("/", ".")


def _loaded_compiled() -> dict[str, bool]:
    """Each hot-path module, by name: True if it was loaded from an extension module."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    loaded = {}
    for source in statecore_build.HOT_PATH:
        module = importlib.import_module(_module_name(source))
        loaded[module.__name__] = str(module.__file__).endswith(suffixes)
    return loaded


def test_the_hot_path_is_compiled_whole_or_not_at_all() -> None:
    loaded = _loaded_compiled()
    expected = os.environ.get("STATECORE_EXPECT_COMPILED")
    if expected is not None:
        want = expected == "1"
        wrong = sorted(name for name, compiled in loaded.items() if compiled != want)
        assert not wrong, f"expected a {'compiled' if want else 'pure'} build; not so: {wrong}"
    else:
        assert len(set(loaded.values())) == 1, f"a half-compiled build: {loaded}"


def test_no_compiled_module_is_older_than_its_source() -> None:
    """An edited source under a compiled module left from an earlier build would not run."""
    stale = []
    for source in statecore_build.HOT_PATH:
        module = importlib.import_module(_module_name(source))
        origin = Path(str(module.__file__))
        if origin.suffix == ".py":
            continue
        if origin.stat().st_mtime < (ROOT / source).stat().st_mtime:
            stale.append(str(origin.relative_to(ROOT)))
    assert not stale, f"rebuild (STATECORE_COMPILE=1 pip install -e .): {stale} are stale"


def test_every_hot_path_module_exists_and_is_statecore_s() -> None:
    for source in statecore_build.HOT_PATH:
        assert (ROOT / source).is_file(), source
        assert source.startswith("statecore/")


@pytest.mark.parametrize(
    ("value", "compiling"),
    [("1", True), ("true", True), (" YES ", True), ("0", False), ("", False), ("no", False)],
)
def test_the_switch_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, compiling: bool
) -> None:
    monkeypatch.setenv("STATECORE_COMPILE", value)
    assert statecore_build.compiling() is compiling
    requires = statecore_build._requires(lambda _config: ["setuptools"], None)
    assert ("mypy==2.4.1" in requires) is compiling
    assert requires[0] == "setuptools"


def test_a_pure_build_finds_what_a_compiled_build_left(tmp_path: Path) -> None:
    (tmp_path / "statecore" / "runners").mkdir(parents=True)
    left = [
        tmp_path / "statecore__mypyc.cpython-311-x86_64-linux-gnu.so",
        tmp_path / "statecore" / "decide.cpython-311-x86_64-linux-gnu.so",
        tmp_path / "statecore" / "runners" / "driver.cpython-311-x86_64-linux-gnu.so",
    ]
    kept = tmp_path / "statecore" / "fold.cpython-311-x86_64-linux-gnu.so"  # not ours to remove
    for path in [*left, kept]:
        path.write_bytes(b"")
    assert sorted(statecore_build.compiled_files(tmp_path)) == sorted(left)
