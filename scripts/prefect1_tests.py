"""Run Prefect 1.4.1's own tests against statecore, through the Prefect 1 compatibility layer.

Usage::

    python scripts/prefect1_tests.py PREFECT_CHECKOUT   # a Prefect 1.4.1 checkout
    python scripts/prefect1_tests.py --mirror           # tag 1.4.1 of the local mirror
    python scripts/prefect1_tests.py --mirror --json counts.json -v

The chosen Prefect test files are copied into a temporary directory, Prefect's own
``tests/conftest.py`` (Cloud, Server and Dask fixtures) is replaced by
``scripts/prefect1_harness/fixtures.py``, and pytest runs them in a subprocess with the plugin
``scripts/prefect1_harness/plugin.py``, with no real ``prefect`` importable. Nothing of
Prefect's is kept or committed: the copy is deleted afterwards.

Which tests are out of scope is decided by the tables below, from a test's id (and, for the
three files whose ``flow.run()``-driven tests are in scope, from its source), before it
runs; never because it fails. The script prints, per file, how many tests passed, failed and
are out of scope, and why each out-of-scope test is; it exits 1 when an in-scope test fails
or a file does not collect.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MIRROR = Path("/work/.mirror/PrefectHQ+prefect/repo")
TAG = "1.4.1"

#: The Prefect test files issue 13 names (paths under the checkout's ``tests/``).
TEST_FILES: tuple[str, ...] = (
    "test_triggers.py",
    "engine/test_state.py",
    "engine/test_signals.py",
    "schedules/test_adjustments.py",
    "schedules/test_clocks.py",
    "schedules/test_filters.py",
    "schedules/test_schedules.py",
    "tasks/test_control_flow.py",
    "core/test_flow.py",
    "core/test_task.py",
    "core/test_task_map.py",
)

#: Files of which only the ``flow.run()``-driven tests are in scope (issue 13, item 4).
FLOW_RUN_FILES: tuple[str, ...] = (
    "core/test_flow.py",
    "core/test_task.py",
    "core/test_task_map.py",
)
_FLOW_RUN = re.compile(r"\b(?:f|flow|flow\d|\w+_flow|flow_\w+)\.run\(")

#: Module paths served as placeholders: importing them works (so a test file collects) but
#: any use of their names raises. A module the compatibility layer really serves wins.
PLACEHOLDER_MODULES: tuple[str, ...] = (
    "prefect.agent",
    "prefect.backend",
    "prefect.client",
    "prefect.configuration",
    "prefect.engine.cloud",
    "prefect.engine.flow_runner",
    "prefect.engine.result",
    "prefect.engine.results",
    "prefect.engine.serializers",
    "prefect.engine.task_runner",
    "prefect.executors",
    "prefect.run_configs",
    "prefect.serialization",
    "prefect.storage",
    "prefect.utilities.configuration",
    "prefect.utilities.debug",
    "prefect.utilities.serialization",
    # test-only third-party packages Prefect's dev requirements install
    "graphviz",
    "toml",
)

#: Prefect names statecore does not have, by module, with why. Each gets a placeholder where
#: the compatibility layer lacks it, so the file collects; tests using it are in the table
#: below. (Names merely missing from the compat map are NOT listed here: they are bugs,
#: reported in .notes/h13c.md.)
OUT_OF_SCOPE_NAMES: dict[str, dict[str, str]] = {
    "prefect.engine.state": {
        "ClientFailed": "Cloud: a state the Cloud client sets when it cannot write a state",
        "Queued": "Cloud/Server: a run waiting for a concurrency slot of the backend",
        "Submitted": "Cloud/Server: a run handed to an agent",
        "_MetaState": "Cloud/Server: base of Submitted/Queued",
    },
    "prefect.utilities.edges": {
        "mapped": "the mapped() call annotation (the compatibility layer declares it out of "
        "scope: task.map(xs, unmapped(y)) instead)",
    },
}

#: Names missing from the compatibility map (statecore HAS them): bugs of the map, reported
#: in .notes/h13c.md. The harness bridges each (module, Prefect name) -> (statecore module,
#: name) only while the map lacks it, and prints every bridge it used, so a gap is visible
#: and never hides a failure of statecore itself.
COMPAT_GAPS: dict[tuple[str, str], tuple[str, str]] = {}

from prefect1_reasons import CLOUD, NOT_RUN, SERIAL, STORAGE, VISUALIZE  # noqa: E402
from prefect1_scope_flows import RULES as FLOW_RULES  # noqa: E402
from prefect1_scope_states import RULES as STATE_RULES  # noqa: E402

#: (node-id regex, reason). The first match decides. Node ids look like
#: ``engine/test_state.py::TestCreateStates::test_create_state_with_no_args[Cached]``.
OUT_OF_SCOPE: list[tuple[str, str]] = [
    (r"::.*serializ", SERIAL),
    # the DST tests' [True] variants load their clock through ClockSchema().load(...)
    (r"schedules/test_clocks.py::Test\w*DaylightSavingsTime::\w+\[True\]", SERIAL),
    (r"::.*(?:Submitted|Queued|ClientFailed|_MetaState)", CLOUD),
    (r"::.*(?:cloud(?!pickle)|Cloud|server|backend|register|deploy)", CLOUD),
    (r"::.*(?:storage|Storage|run_config|RunConfig)", STORAGE),
    (r"::.*visualiz", VISUALIZE),
    # file by file: the state, trigger, signal, schedule and control-flow files, then the
    # flow.run()-driven files (core/test_flow, core/test_task, core/test_task_map)
    *STATE_RULES,
    *FLOW_RULES,
]


def out_of_scope_reason(nodeid: str, source: str) -> str | None:
    """Why the test ``nodeid`` (whose function source is ``source``) is out of scope, or None.

    Decided from the tables above only, never from the test's outcome.
    """
    for pattern, reason in OUT_OF_SCOPE:
        if re.search(pattern, nodeid):
            return reason
    path = nodeid.split("::", 1)[0]
    if path.startswith("tests/"):
        path = path[len("tests/") :]
    if path in FLOW_RUN_FILES and not _FLOW_RUN.search(source):
        return NOT_RUN
    return None


# -- running ---------------------------------------------------------------------------------


def _extract_mirror(dest: Path) -> Path:
    git = ["git", f"--git-dir={MIRROR}", "archive", TAG, "tests"]
    tar_path = dest / "tests.tar"
    with tar_path.open("wb") as fh:
        # git warns about an unrelated LFS object of the repository; only failure matters
        done = subprocess.run(git, stdout=fh, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"git archive failed: {done.stderr}")
    with tarfile.open(tar_path) as tar:
        tar.extractall(dest / "prefect", filter="data")
    return dest / "prefect"


def _prepare(checkout: Path, work: Path, files: tuple[str, ...] = TEST_FILES) -> Path:
    """Copy the chosen test files into ``work/tests`` with the harness conftest."""
    tests = work / "tests"
    for rel in files:
        src = checkout / "tests" / rel
        if not src.is_file():
            raise SystemExit(f"{src} not found: is {checkout} a Prefect {TAG} checkout?")
        dst = tests / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    for d in {tests, *(p.parent for p in tests.rglob("test_*.py"))}:
        (d / "__init__.py").touch()
    shutil.copyfile(HERE / "prefect1_harness" / "fixtures.py", tests / "conftest.py")
    return tests


def _run_pytest(work: Path, out: Path, extra: list[str], log: Path | None) -> int:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE), str(REPO), env.get("PYTHONPATH", "")) if p
    )
    env["PREFECT1_HARNESS_OUT"] = str(out)
    env["STATECORE_STORE"] = "memory://"
    env.pop("STATECORE_PREFECT1", None)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "prefect1_harness.plugin",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "-o",
        "python_files=test_*.py",
        "--rootdir",
        str(work),
        "--timeout=20",
        "-v" if log is not None else "-q",
        "--durations=15",
        "--no-header",
        "-rN",
        "--tb=short",
        "-W",
        "ignore::DeprecationWarning",
        *extra,
        "tests",
    ]
    if log is None:
        return subprocess.run(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL).returncode
    with log.open("w") as fh:
        return subprocess.run(cmd, cwd=work, env=env, stdout=fh, stderr=fh).returncode


def _file_of(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return path[len("tests/") :] if path.startswith("tests/") else path


def summarize(data: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per-file counts of each outcome."""
    counts: dict[str, Counter[str]] = {rel: Counter() for rel in TEST_FILES}
    for nodeid, rec in data["tests"].items():
        counts.setdefault(_file_of(nodeid), Counter())[rec["outcome"]] += 1
    return {
        f: {k: c.get(k, 0) for k in ("passed", "failed", "out_of_scope", "skipped", "xfail")}
        for f, c in counts.items()
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(data: dict[str, Any]) -> str:
    """Every out-of-scope test with its reason, file by file, under the per-file counts:
    the list the README's compatibility table summarises."""
    counts = summarize(data)
    lines = [
        f"# Prefect {TAG}'s own tests against statecore",
        "",
        "Written by `python scripts/prefect1_tests.py --mirror --markdown PREFECT1_TESTS.md`;",
        'README.md, "Proof by Prefect\'s own tests", says how scope is decided.',
        "",
        "| file | passed | failed | out of scope |",
        "|---|---:|---:|---:|",
    ]
    for f, c in counts.items():
        lines.append(f"| `{f}` | {c['passed']} | {c['failed']} | {c['out_of_scope']} |")
    by_file: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for nodeid, rec in sorted(data["tests"].items()):
        if rec["outcome"] == "out_of_scope":
            by_file[_file_of(nodeid)].append((nodeid.split("::", 1)[1], rec["detail"]))
    for f in counts:
        if not by_file.get(f):
            continue
        lines += ["", f"## `{f}`: out of scope", "", "| test | why |", "|---|---|"]
        lines += [f"| `{_cell(test)}` | {_cell(why)} |" for test, why in by_file[f]]
    return "\n".join(lines) + "\n"


def report(data: dict[str, Any], verbose: bool) -> int:
    """Print the per-file table and details; return the exit status."""
    counts = summarize(data)
    print(f"prefect layer: {data['layer']}")
    for gap in data.get("bridged", []):
        print(f"  compat gap bridged by the harness: {gap}")
    print(f"{'file':36} {'passed':>6} {'failed':>6} {'out of scope':>12} {'skipped':>7}")
    total: Counter[str] = Counter()
    for f, c in counts.items():
        total.update(c)
        print(
            f"{f:36} {c['passed']:6} {c['failed']:6} {c['out_of_scope']:12} "
            f"{c['skipped'] + c['xfail']:7}"
        )
    print(
        f"{'total':36} {total['passed']:6} {total['failed']:6} {total['out_of_scope']:12} "
        f"{total['skipped'] + total['xfail']:7}"
    )
    by_reason: dict[str, list[str]] = defaultdict(list)
    for nodeid, rec in sorted(data["tests"].items()):
        if rec["outcome"] == "out_of_scope":
            by_reason[rec["detail"]].append(nodeid)
    print("\nout of scope, by reason:")
    for reason, ids in sorted(by_reason.items()):
        print(f"  {len(ids):4}  {reason}")
        if verbose:
            for nodeid in ids:
                print(f"          {nodeid}")
    skipped = [(n, r) for n, r in sorted(data["tests"].items()) if r["outcome"] == "skipped"]
    if skipped:
        print("\nskipped by Prefect's own markers:")
        for nodeid, rec in skipped:
            print(f"  {nodeid}: {rec['detail']}")
    failed = [(n, r) for n, r in sorted(data["tests"].items()) if r["outcome"] == "failed"]
    if failed:
        print("\nFAILED (in scope):")
        for nodeid, rec in failed:
            print(f"  {nodeid}")
            if verbose:
                print("    " + rec["detail"].replace("\n", "\n    "))
    for nodeid, text in data["collect_errors"].items():
        print(f"\nCOLLECTION ERROR {nodeid}:\n{text}")
    return 1 if failed or data["collect_errors"] else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", nargs="?", help="path to a Prefect 1.4.1 checkout")
    parser.add_argument("--mirror", action="store_true", help=f"use tag {TAG} of {MIRROR}")
    parser.add_argument("--json", metavar="OUT", help="write the per-file counts as JSON")
    parser.add_argument("--raw", metavar="OUT", help="write every test's outcome as JSON")
    parser.add_argument(
        "--markdown", metavar="OUT", help="write the counts and every out-of-scope test"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="list ids and tracebacks")
    parser.add_argument("-k", metavar="EXPR", help="pytest -k expression (a subset)")
    parser.add_argument("--log", metavar="OUT", help="write pytest's own output (-v) here")
    parser.add_argument(
        "--files", nargs="+", metavar="REL", help="only these test files (e.g. test_triggers.py)"
    )
    args = parser.parse_args(argv)
    files = tuple(args.files) if args.files else TEST_FILES
    unknown = [f for f in files if f not in TEST_FILES]
    if unknown:
        parser.error(f"unknown test files {unknown}: choose from {list(TEST_FILES)}")
    if bool(args.checkout) == args.mirror:
        parser.error("give a Prefect checkout path or --mirror (one of them)")
    with tempfile.TemporaryDirectory(prefix="prefect1-tests-") as tmp:
        work = Path(tmp)
        checkout = _extract_mirror(work) if args.mirror else Path(args.checkout).resolve()
        run_dir = work / "run"
        _prepare(checkout, run_dir, files)
        out = work / "outcomes.json"
        extra = ["-k", args.k] if args.k else []
        _run_pytest(run_dir, out, extra, Path(args.log).resolve() if args.log else None)
        if not out.exists():
            print("pytest did not write its outcomes (see its output above)", file=sys.stderr)
            return 2
        data = json.loads(out.read_text())
    status = report(data, args.verbose)
    if args.json:
        Path(args.json).write_text(json.dumps(summarize(data), indent=1, sort_keys=True) + "\n")
    if args.raw:
        Path(args.raw).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown(data))
    return status


if __name__ == "__main__":
    sys.exit(main())
