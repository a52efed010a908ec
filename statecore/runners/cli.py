"""The ``statecore`` command: run, resume and audit flows from the shell.

Commands (``statecore COMMAND --help`` for each)::

    run FILE.py:FLOW [-p KEY=VALUE ...] [--run-id ID]     run a flow
    resume RUN_ID --flow FILE.py:FLOW [--approve TASK ...] [--allow-changed]
    rerun RUN_ID --from TASK --flow FILE.py:FLOW          new run reusing what is upstream
    runs [--flow NAME] [--state STATE] [--since T] [--until T] [--limit N]
    show RUN_ID [--children]                              task states, attempts, durations
    timeline RUN_ID [--html OUT.html]                     Gantt of task attempts
    logs RUN_ID                                           the tasks' log lines and run notes
    export RUN_ID [--output FILE]                         the log as JSON lines
    graph FILE.py:FLOW [--format dot|mermaid] [--run RUN_ID]
    verify RUN_ID [--expect-head HEX]                     check the hash chain
    cancel RUN_ID                                         ask the run's driver to cancel
    prune --before T                                      delete finished runs

Every command takes ``--store URL`` (else ``$STATECORE_STORE``, else
``sqlite:///.statecore/runs.db``) and names the store it used when a run is not found.
``FILE.py:FLOW`` is a Python file and the name of a Flow in it; ``-p`` values are read
as JSON, else taken as strings; TASK is a task key or a name unique in the flow; times
(``--since``, ``--until``, ``--before``) are ISO 8601 (UTC unless they carry an offset)
or an age such as ``30m``, ``12h``, ``7d``.

Exit status: 0 the flow succeeded (and, for commands that do not report on a flow's
outcome, the command did what was asked), 1 the flow failed (or was cancelled),
2 bad usage or bad input (unknown run, a run of another flow, a corrupt log or a broken
hash chain, an output path that is a directory or not writable, a malformed
``FILE.py:FLOW`` or ``-p``), 3 the run is not finished (paused or interrupted),
4 the store is unavailable or the run's lease is held by another process.
``run``, ``resume``, ``rerun`` and ``show`` exit with the run's status (0, 1 or 3).
Bad input is refused before anything is written to the store.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar
from urllib.parse import unquote

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from statecore.backends import default_store_url, open_store
from statecore.backends.base import Store
from statecore.errors import (
    ConcurrencyError,
    CorruptEvent,
    LeaseHeld,
    LeaseLost,
    ServiceUnavailable,
    StatecoreError,
)
from statecore.flow import Flow
from statecore.graph import Graph
from statecore.runners.audit import export_records, iso_time, log_lines, verify_chain
from statecore.runners.journal import hmac_key
from statecore.runners.loading import FlowLoadError, load_flow
from statecore.runners.local import check_parameters, replay, resume, run_flow
from statecore.runners.rerun import rerun as rerun_flow
from statecore.runners.timeline import STATE_COLOURS, gantt, html_page
from statecore.states import Mapped, State, state_class
from statecore.view import RunView, TaskRun, fold

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_UNFINISHED",
    "EXIT_USAGE",
    "cli",
    "main",
    "parse_parameters",
    "parse_time",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNFINISHED = 3
EXIT_UNAVAILABLE = 4

_P = ParamSpec("_P")
_R = TypeVar("_R")


class CLIError(click.ClickException):
    """A message for the user and the exit status that goes with it."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        # click declares exit_code a class variable; each error carries its own status
        object.__setattr__(self, "exit_code", exit_code)


def _translate_errors(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn statecore's errors into messages with the documented exit status."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except (ServiceUnavailable, LeaseHeld, LeaseLost, ConcurrencyError) as exc:
            raise CLIError(str(exc), EXIT_UNAVAILABLE) from exc
        except ImportError as exc:  # a store URL whose extra is not installed
            raise CLIError(f"the store cannot be opened: {exc}", EXIT_UNAVAILABLE) from exc
        except StatecoreError as exc:  # unknown run, corrupt log, changed flow, bad URL, ...
            raise CLIError(str(exc), EXIT_USAGE) from exc

    return wrapper


def _store_option(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    return click.option(
        "--store",
        "store_url",
        metavar="URL",
        default=None,
        help="Store URL (default: $STATECORE_STORE, else sqlite:///.statecore/runs.db).",
    )(fn)


def _console() -> Console:
    # Piped output is not cut to 80 columns: run ids and messages stay whole for grep.
    # No markup: task names, messages and notes are user text ("name[0]", "[code-changed]").
    return Console(markup=False, highlight=False, width=None if sys.stdout.isatty() else 200)


# -- stores and runs --------------------------------------------------------------------


def _missing_sqlite_file(url: str) -> Path | None:
    """The file a ``sqlite:///`` URL names if it does not exist (else None).

    Commands that only read must not create an empty database as a side effect of
    looking for a run, so they check the file first (the SQLite store creates it).
    """
    if not url.startswith("sqlite:///"):
        return None
    raw = unquote(url[len("sqlite:///") :].partition("?")[0].partition("#")[0])
    if not raw or raw == ":memory:":
        return None
    path = Path(raw)
    return None if path.exists() else path


@contextmanager
def _store(url: str | None, *, run_id: str | None = None) -> Iterator[Store]:
    """Open the store.

    With ``run_id`` (commands that read an existing run) a ``sqlite:///`` URL whose file
    does not exist is reported as "no such run" instead of being created empty.
    """
    chosen = url or default_store_url()
    if run_id is not None:
        missing = _missing_sqlite_file(chosen)
        if missing is not None:
            raise CLIError(
                f"no run {run_id!r} in store {chosen}: it has no database file at {missing}; "
                "pass --store URL or set STATECORE_STORE to look in another store"
            )
    store = open_store(chosen)
    try:
        yield store
    finally:
        store.close()


def _not_found(run_id: str, store: Store) -> NoReturn:
    raise CLIError(
        f"no run {run_id!r} in store {store.url}; pass --store URL or set STATECORE_STORE "
        "to look in another store"
    )


def _load_view(store: Store, run_id: str) -> RunView:
    if store.head(run_id) == 0:
        _not_found(run_id, store)
    return replay(store, run_id)


def _exit_for(state: State) -> int:
    if not state.is_finished():
        return EXIT_UNFINISHED
    return EXIT_OK if state.is_successful() else EXIT_FAILED


def _load(ref: str) -> Flow:
    try:
        return load_flow(ref)
    except FlowLoadError as exc:
        raise CLIError(str(exc)) from exc


def _task_index(graph: Graph, ref: str, option: str) -> int:
    try:
        return graph.node_for(ref).index
    except KeyError as exc:
        known = ", ".join(n.key for n in graph.nodes)
        raise CLIError(f"{option} {ref!r}: {exc.args[0]}; tasks: {known}") from exc


# -- parsing ----------------------------------------------------------------------------

_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_time(text: str, *, now: datetime | None = None) -> int:
    """A time option as UTC ns: ISO 8601 (naive means UTC) or an age such as ``7d``.

    Times beyond what 64-bit nanoseconds hold (after 2262) are clamped to the limit.

    Raises:
        click.BadParameter: neither form.

    Example:
        >>> parse_time("1970-01-01T00:00:01Z")
        1000000000
        >>> parse_time("1d", now=datetime(1970, 1, 2, tzinfo=UTC))
        0
    """
    text = text.strip()
    age = _AGE.fullmatch(text)
    if age:
        base = now or datetime.now(UTC)
        when = base - timedelta(seconds=float(age[1]) * _AGE_UNITS[age[2]])
    else:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise click.BadParameter(
                f"{text!r} is not an ISO 8601 time (2024-05-01, 2024-05-01T12:00:00+02:00) "
                "or an age (30m, 12h, 7d)"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    ns = (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000
    # Stores keep times as signed 64-bit nanoseconds (1677 to 2262): clamp to that range.
    return max(-(2**63), min(ns, 2**63 - 1))


def parse_parameters(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a VALUE is JSON if it parses, else the string itself.

    Raises:
        CLIError: a pair without ``=`` or with an empty key, or a key given twice.

    Example:
        >>> parse_parameters(["n=3", "name=ann", 'xs=[1, 2]', 'q="3"'])
        {'n': 3, 'name': 'ann', 'xs': [1, 2], 'q': '3'}
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CLIError(f"-p {pair!r}: expected KEY=VALUE (VALUE as JSON, else a string)")
        if key in out:
            raise CLIError(f"-p: parameter {key!r} given twice")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


# -- output paths -----------------------------------------------------------------------


def _check_output(path: Path, option: str) -> None:
    """Refuse an output path that cannot be written, before any work is done."""
    if path.is_dir():
        raise CLIError(f"{option} {str(path)!r} is a directory; give a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CLIError(f"{option} {str(path)!r}: the directory {str(parent)!r} does not exist")
    if path.exists() and not os.access(path, os.W_OK):
        raise CLIError(f"{option} {str(path)!r} is not writable")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"{option} {str(path)!r}: the directory {str(parent)!r} is not writable")


def _write_atomically(path: Path, text: str, option: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place."""
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise CLIError(f"{option} {str(path)!r} cannot be written: {exc}") from exc


# -- summaries --------------------------------------------------------------------------


def _seconds(ns: int | None) -> str:
    if ns is None:
        return ""
    s = ns / 1e9
    if s < 1:
        return f"{s * 1000:.1f}ms"
    if s < 120:
        return f"{s:.2f}s"
    return f"{int(s // 60)}m{s % 60:04.1f}s"


def _span(runs: Sequence[TaskRun]) -> int | None:
    starts = [r.started for r in runs if r.started is not None]
    ends = [r.ended for r in runs if r.ended is not None]
    if not starts or not ends:
        return None
    return max(ends) - min(starts)


def _styled(state: State | str) -> Text:
    name = state if isinstance(state, str) else state.name
    return Text(name, style=STATE_COLOURS.get(name, ""))


def _children_summary(children: Sequence[TaskRun]) -> str:
    counts = Counter(c.state.name for c in children)
    parts = ", ".join(f"{n} {name}" for name, n in counts.most_common())
    return f"{len(children)} children: {parts}" if children else "no children"


def _tasks_table(view: RunView, *, children: bool, limit: int | None = None) -> Table:
    table = Table(show_edge=True, expand=False)
    for column in ("task", "key", "state", "attempts", "duration", "message"):
        table.add_column(column, justify="right" if column in ("attempts", "duration") else "left")
    names = {t["key"]: t["name"] for t in view.graph.get("tasks", [])}
    for i, key in enumerate(view.keys):
        if limit is not None and i >= limit:
            table.add_row(f"... {len(view.keys) - i} more", "", "", "", "", "")
            break
        run = view.runs[i]
        kids = view.children.get(i)
        if isinstance(run.state, Mapped) and kids is not None:
            attempts = str(sum(c.attempt for c in kids))
            message = _children_summary(kids)
            duration = _seconds(_span(kids))
        else:
            attempts = str(run.attempt)
            message = run.state.message or ""
            duration = _seconds(_span([run]))
        table.add_row(names.get(key, key), key, _styled(run.state), attempts, duration, message)
        if children and kids:
            for j, child in enumerate(kids):
                table.add_row(
                    f"  {names.get(key, key)}[{j}]",
                    "",
                    _styled(child.state),
                    str(child.attempt),
                    _seconds(_span([child])),
                    child.state.message or "",
                )
    return table


def _outcome(console: Console, view: RunView, flow_ref: str | None) -> None:
    """The closing lines after run/resume/rerun: counts, failures, what to do next."""
    counts: Counter[str] = Counter()
    failed: list[str] = []
    paused: list[str] = []
    names = {t["key"]: t["name"] for t in view.graph.get("tasks", [])}
    for i, key in enumerate(view.keys):
        entities = [(key, view.runs[i])]
        if i in view.children:
            entities = [(f"{key}[{j}]", c) for j, c in enumerate(view.children[i])]
        for label, run in entities:
            counts[run.state.name] += 1
            if run.state.is_failed():
                failed.append(f"{label}: {run.state.message}")
            if run.state.is_paused():
                paused.append(names.get(key, key))
    summary = ", ".join(f"{n} {name}" for name, n in counts.most_common())
    console.print(f"tasks: {summary}")
    for failure in failed[:10]:
        console.print(Text(f"  failed {failure}", style=STATE_COLOURS["Failed"]))
    if len(failed) > 10:
        console.print(f"  ... and {len(failed) - 10} more failures")
    state = view.flow_state
    closing = Text("flow ")
    closing.append_text(_styled(state))
    closing.append(f": {state.message or ''} (run {view.run_id})")
    console.print(closing)
    if not state.is_finished():
        flow_arg = f" --flow {flow_ref}" if flow_ref else " --flow FILE.py:FLOW"
        if paused:
            approve = " ".join(f"--approve {p}" for p in dict.fromkeys(paused))
            console.print(
                f"paused at {', '.join(dict.fromkeys(paused))}; to approve: "
                f"statecore resume {view.run_id}{flow_arg} {approve}"
            )
        else:
            console.print(f"not finished; continue with: statecore resume {view.run_id}{flow_arg}")
    console.print(f"details: statecore show {view.run_id}", style="dim")


@contextmanager
def _interruptible(console: Console, run_id: str, flow_ref: str) -> Iterator[None]:
    """Ctrl-C while tasks run: the run stays resumable; say how, exit 3."""
    try:
        yield
    except KeyboardInterrupt:
        console.print(
            f"interrupted; run {run_id} is not finished; continue with: "
            f"statecore resume {run_id} --flow {flow_ref}"
        )
        sys.exit(EXIT_UNFINISHED)


# -- progress ---------------------------------------------------------------------------


class _Progress:
    """A finished/total bar for a run in progress, fed by polling the store.

    It starts drawing only when stdout is a terminal and the run has taken more than
    half a second; it reads the log the driver writes (so it lags by at most one
    group-commit window) and never writes anything.
    """

    DELAY = 0.5
    EVERY = 0.25

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if sys.stdout.isatty():
            self._thread = threading.Thread(
                target=self._loop, name="statecore-progress", daemon=True
            )

    def __enter__(self) -> _Progress:
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _counts(self, view: RunView) -> tuple[int, int]:
        done = total = 0
        for i, run in enumerate(view.runs):
            runs = view.children.get(i) if isinstance(run.state, Mapped) else None
            for r in runs if runs is not None else [run]:
                total += 1
                done += r.state.is_finished() and not r.state.is_looped()
        return done, total

    def _loop(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        if self._stop.wait(self.DELAY):
            return
        view = RunView(self.run_id)
        columns = ("tasks", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
            task = bar.add_task("tasks", total=None)
            while True:
                try:
                    for event in self.store.read(self.run_id, after=view.head):
                        view.apply(event)
                except Exception:  # the bar is a convenience; the run reports errors
                    return
                done, total = self._counts(view)
                bar.update(task, completed=done, total=total or None)
                if self._stop.wait(self.EVERY):
                    return


# -- the command group ------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="statecore")
def cli() -> None:
    """Durable, auditable workflows: run flows and audit their logs."""


@cli.command()
@click.argument("flow_ref", metavar="FILE.py:FLOW")
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A parameter; VALUE is JSON if it parses, else a string. Repeatable.",
)
@click.option("--run-id", default=None, help="Id for the new run (an unfinished one resumes).")
@_store_option
@_translate_errors
def run(flow_ref: str, params: tuple[str, ...], run_id: str | None, store_url: str | None) -> None:
    """Run the flow FLOW defined in FILE.py."""
    values = parse_parameters(params)
    flow = _load(flow_ref)
    try:
        check_parameters(Graph(flow), values)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    console = _console()
    with _store(store_url) as store:
        run_id = run_id or uuid.uuid4().hex
        existed = store.head(run_id) > 0
        try:
            with _interruptible(console, run_id, flow_ref), _Progress(store, run_id):
                state = run_flow(flow, parameters=values, store=store, run_id=run_id)
        except ValueError as exc:  # another flow's or other parameters' run id
            raise CLIError(str(exc)) from exc
        if existed:
            console.print(f"run {run_id} already existed; it was continued, not started anew")
        _outcome(console, replay(store, run_id), flow_ref)
    sys.exit(_exit_for(state))


@cli.command(name="resume")
@click.argument("run_id")
@click.option(
    "--flow", "flow_ref", required=True, metavar="FILE.py:FLOW", help="The flow the run belongs to."
)
@click.option(
    "--approve",
    multiple=True,
    metavar="TASK",
    help="Approve this paused task (key or unique name). Repeatable.",
)
@click.option(
    "--allow-changed",
    is_flag=True,
    help="Resume even though the flow's structure changed since the run started.",
)
@_store_option
@_translate_errors
def resume_command(
    run_id: str,
    flow_ref: str,
    approve: tuple[str, ...],
    allow_changed: bool,
    store_url: str | None,
) -> None:
    """Finish an interrupted or paused run; never re-runs what succeeded."""
    flow = _load(flow_ref)
    graph = Graph(flow)
    approved = [_task_index(graph, ref, "--approve") for ref in approve]
    console = _console()
    with _store(store_url, run_id=run_id) as store:
        view = _load_view(store, run_id)
        if view.flow_name != flow.name:
            raise CLIError(
                f"run {run_id!r} is a run of flow {view.flow_name!r}, not {flow.name!r} "
                f"({flow_ref})"
            )
        for ref, index in zip(approve, approved, strict=True):
            key = graph.nodes[index].key
            state = view.state_of(view.by_key[key]) if key in view.by_key else None
            paused = state is not None and (
                state.is_paused()
                or any(c.state.is_paused() for c in view.children.get(view.by_key[key], ()))
            )
            if not paused:
                console.print(
                    f"note: {ref} is not paused ({state.name if state else 'unknown'});"
                    " nothing to approve there"
                )
        if view.finished():
            console.print(f"run {run_id} already finished; nothing ran")
        with _interruptible(console, run_id, flow_ref), _Progress(store, run_id):
            state = resume(
                run_id,
                flow,
                store=store,
                approve=[graph.nodes[i].key for i in approved],
                allow_changed=allow_changed,
            )
        _outcome(console, replay(store, run_id), flow_ref)
    sys.exit(_exit_for(state))


@cli.command(name="rerun")
@click.argument("run_id")
@click.option(
    "--from",
    "from_task",
    required=True,
    metavar="TASK",
    help="Rerun this task (key or unique name) and everything downstream of it.",
)
@click.option(
    "--flow", "flow_ref", required=True, metavar="FILE.py:FLOW", help="The flow the run belongs to."
)
@click.option("--run-id", "new_run_id", default=None, help="Id for the new run.")
@click.option(
    "--allow-changed",
    is_flag=True,
    help="Rerun even though the flow's structure changed (tasks matched by key).",
)
@_store_option
@_translate_errors
def rerun_command(
    run_id: str,
    from_task: str,
    flow_ref: str,
    new_run_id: str | None,
    allow_changed: bool,
    store_url: str | None,
) -> None:
    """Start a new run that reuses RUN_ID's results upstream of TASK and runs the rest.

    Tasks that are neither TASK nor downstream of it start in the final state RUN_ID
    logged for them, results included, and do not run. The new run records RUN_ID as
    its parent. The last line of output is the new run's id.
    """
    flow = _load(flow_ref)
    graph = Graph(flow)
    _task_index(graph, from_task, "--from")
    console = _console()
    with _store(store_url, run_id=run_id) as store:
        _load_view(store, run_id)
        new_run_id = new_run_id or uuid.uuid4().hex
        if store.head(new_run_id) > 0:
            raise CLIError(f"--run-id {new_run_id!r} is already taken in store {store.url}")
        with _interruptible(console, new_run_id, flow_ref), _Progress(store, new_run_id):
            state = rerun_flow(
                run_id,
                flow,
                from_task,
                store=store,
                new_run_id=new_run_id,
                allow_changed=allow_changed,
            )
        console.print(f"rerun of {run_id} from {from_task}:")
        _outcome(console, replay(store, new_run_id), flow_ref)
        click.echo(new_run_id)
    sys.exit(_exit_for(state))


@cli.command()
@click.option("--flow", "flow_name", default=None, help="Only runs of this flow (its name).")
@click.option("--state", default=None, help="Only runs whose flow state is this (Success, ...).")
@click.option("--since", default=None, metavar="TIME", help="Only runs started at or after.")
@click.option("--until", default=None, metavar="TIME", help="Only runs started before.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@_store_option
@_translate_errors
def runs(
    flow_name: str | None,
    state: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    store_url: str | None,
) -> None:
    """List runs, newest first."""
    if state is not None:
        state = state_class(state).__name__
    since_ns = parse_time(since) if since else None
    until_ns = parse_time(until) if until else None
    console = _console()
    chosen = store_url or default_store_url()
    if _missing_sqlite_file(chosen) is not None:
        console.print(f"no runs in store {chosen} (no database file yet)")
        return
    with _store(chosen) as store:
        found = store.list_runs(
            flow_name=flow_name, state=state, since=since_ns, until=until_ns, limit=limit
        )
        if not found:
            console.print(f"no runs match in store {store.url}")
            return
        table = Table(title=f"runs in {store.url}")
        for column in ("run", "flow", "state", "started (UTC)", "duration", "events", "parent"):
            table.add_column(column, justify="right" if column == "events" else "left")
        for meta in found:
            duration = _seconds(meta.ended - meta.started) if meta.ended is not None else ""
            table.add_row(
                meta.run_id,
                meta.flow_name,
                _styled(meta.state),
                iso_time(meta.started)[:19].replace("T", " "),
                duration,
                str(meta.head),
                meta.parent_run or "",
            )
        console.print(table)


@cli.command()
@click.argument("run_id")
@click.option("--children", is_flag=True, help="List every mapped child, not a summary.")
@_store_option
@_translate_errors
def show(run_id: str, children: bool, store_url: str | None) -> None:
    """Show a run: its flow state, and each task's state, attempts and duration."""
    console = _console()
    with _store(store_url, run_id=run_id) as store:
        view = _load_view(store, run_id)
        lease = store.get_lease(run_id)
    state = view.flow_state
    head = Text(f"{view.flow_name} · run {view.run_id} · ")
    head.append_text(_styled(state))
    if state.message:
        head.append(f": {state.message}")
    console.print(head)
    if view.started is not None:
        ended = view.ended if view.ended is not None else None
        when = f"started {iso_time(view.started)}"
        if ended is not None:
            when += f", ended {iso_time(ended)} ({_seconds(ended - view.started)})"
        console.print(when)
    if view.parent_run:
        console.print(f"rerun of {view.parent_run}")
    if view.parameters:
        console.print(f"parameters: {json.dumps(view.parameters, default=repr, sort_keys=True)}")
    if lease is not None and lease.expires > time.time_ns() and not view.finished():
        console.print(f"driven by {lease.owner} (lease epoch {lease.epoch})")
    console.print(_tasks_table(view, children=children))
    for ts, note in view.notes:
        console.print(f"note {iso_time(ts)} [{note.code}] {note.message}")
    for problem in view.problems:
        console.print(Text(f"problem in the log: {problem}", style="bold red"))
    sys.exit(_exit_for(state))


@cli.command()
@click.argument("run_id")
@click.option(
    "--html",
    "html_out",
    type=click.Path(path_type=Path),
    default=None,
    metavar="OUT.html",
    help="Write a self-contained HTML page instead.",
)
@_store_option
@_translate_errors
def timeline(run_id: str, html_out: Path | None, store_url: str | None) -> None:
    """Draw a Gantt of the run's task attempts (terminal, or HTML with --html)."""
    if html_out is not None:
        _check_output(html_out, "--html")
    with _store(store_url, run_id=run_id) as store:
        view = _load_view(store, run_id)
    if html_out is None:
        _console().print(gantt(view))
        return
    _write_atomically(html_out, html_page(view), "--html")
    click.echo(f"wrote {html_out}")


@cli.command()
@click.argument("run_id")
@click.option(
    "--notes/--no-notes",
    default=True,
    show_default=True,
    help="Include run notes (code changed, interruptions, ...).",
)
@_store_option
@_translate_errors
def logs(run_id: str, notes: bool, store_url: str | None) -> None:
    """Print the log lines the run's tasks wrote through context['logger']."""
    with _store(store_url, run_id=run_id) as store:
        view = _load_view(store, run_id)
    lines = log_lines(view, notes=notes)
    if not lines:
        click.echo(f"run {run_id}: no log lines", err=True)
    for line in lines:
        click.echo(f"{iso_time(line.ts)} {line.level:<7} {line.source}: {line.message}")


@cli.command()
@click.argument("run_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
@_store_option
@_translate_errors
def export(run_id: str, output: Path | None, store_url: str | None) -> None:
    """Print the run's log as JSON lines, one event per line.

    Fields: run_id, seq, ts (UTC ns), ts_iso, epoch, kind, prev_hash (hex), then the
    decoded body (see statecore.runners.audit for the schema).
    """
    if output is not None:
        _check_output(output, "--output")
    with _store(store_url, run_id=run_id) as store:
        events = store.read(run_id)
    if not events:
        _not_found(run_id, store)
    lines = [json.dumps(r, ensure_ascii=False) for r in export_records(events)]
    text = "\n".join(lines) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        _write_atomically(output, text, "--output")
        click.echo(f"wrote {len(lines)} events to {output}", err=True)


@cli.command()
@click.argument("flow_ref", metavar="FILE.py:FLOW")
@click.option(
    "--format", "fmt", type=click.Choice(["dot", "mermaid"]), default="dot", show_default=True
)
@click.option("--run", "run_id", default=None, help="Colour tasks by this run's states.")
@_store_option
@_translate_errors
def graph(flow_ref: str, fmt: str, run_id: str | None, store_url: str | None) -> None:
    """Print the flow's graph as Graphviz DOT or Mermaid."""
    flow = _load(flow_ref)
    record = Graph(flow).record()
    states: dict[str, str] = {}
    if run_id is not None:
        with _store(store_url, run_id=run_id) as store:
            view = _load_view(store, run_id)
        if view.flow_name != flow.name:
            raise CLIError(f"run {run_id!r} is a run of flow {view.flow_name!r}, not {flow.name!r}")
        states = {k: view.state_of(i).name for k, i in view.by_key.items()}
    render = _dot if fmt == "dot" else _mermaid
    click.echo(render(flow.name, record, states))


def _dot_str(*lines: str) -> str:
    escaped = (line.replace("\\", "\\\\").replace('"', '\\"') for line in lines)
    return '"' + "\\n".join(escaped) + '"'


def _dot(name: str, record: dict[str, Any], states: dict[str, str]) -> str:
    reference = set(record.get("reference", []))
    lines = [
        f"digraph {_dot_str(name)} {{",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];',
    ]
    for t in record["tasks"]:
        attrs = [f"label={_dot_str(t['name'], t['key'])}"]
        if t.get("kind") == "parameter":
            attrs.append("shape=ellipse")
        if t.get("mapped"):
            attrs.append("peripheries=2")
        if t["key"] in reference:
            attrs.append("penwidth=2")
        if t["key"] in states:
            attrs.append(f'fillcolor="{STATE_COLOURS.get(states[t["key"]], "#ffffff")}"')
            attrs.append(f"tooltip={_dot_str(states[t['key']])}")
        lines.append(f"  {_dot_str(t['key'])} [{', '.join(attrs)}];")
    for up, down, key, mapped, flattened in record["edges"]:
        attrs = []
        label = key or ""
        if mapped:
            label += " (flattened, mapped)" if flattened else " (mapped)"
            attrs.append("style=dashed")
        if key is None:
            attrs.append("style=dotted")
        if label:
            attrs.append(f"label={_dot_str(label.strip())}")
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"  {_dot_str(up)} -> {_dot_str(down)}{suffix};")
    lines.append("}")
    return "\n".join(lines)


def _mermaid_str(text: str) -> str:
    return text.replace('"', "#quot;")


def _mermaid(name: str, record: dict[str, Any], states: dict[str, str]) -> str:
    ids = {t["key"]: f"t{i}" for i, t in enumerate(record["tasks"])}
    reference = set(record.get("reference", []))
    lines = [f"%% flow {_mermaid_str(name)}", "flowchart LR"]
    for t in record["tasks"]:
        label = f'"{_mermaid_str(t["name"])}<br/><small>{_mermaid_str(t["key"])}</small>"'
        if t.get("kind") == "parameter":
            shape = f"([{label}])"
        elif t.get("mapped"):
            shape = f"[[{label}]]"
        else:
            shape = f"[{label}]"
        lines.append(f"  {ids[t['key']]}{shape}")
    for up, down, key, mapped, flattened in record["edges"]:
        arrow = "-.->" if mapped else "-->"
        label = (key or "") + (" flattened" if flattened else "") + (" mapped" if mapped else "")
        text = f"|{_mermaid_str(label.strip())}|" if label.strip() else ""
        lines.append(f"  {ids[up]} {arrow}{text} {ids[down]}")
    for state in sorted(set(states.values())):
        colour = STATE_COLOURS.get(state, "#ffffff")
        lines.append(f"  classDef {state} fill:{colour},color:#fff")
    for key, state in states.items():
        lines.append(f"  class {ids[key]} {state}")
    if reference:
        lines.append("  classDef reference stroke-width:3px")
        lines.append(f"  class {','.join(ids[k] for k in sorted(reference))} reference")
    return "\n".join(lines)


@cli.command()
@click.argument("run_id")
@click.option(
    "--expect-head",
    default=None,
    metavar="HEX",
    help="The head hash recorded earlier; a different one is an error.",
)
@_store_option
@_translate_errors
def verify(run_id: str, expect_head: str | None, store_url: str | None) -> None:
    """Recompute the run's hash chain; name the first broken link; print the head hash.

    With STATECORE_HMAC_KEY set, the chain is checked as an HMAC with that key.
    """
    key = hmac_key()
    with _store(store_url, run_id=run_id) as store:
        events = store.read(run_id)
    if not events:
        _not_found(run_id, store)
    result = verify_chain(run_id, events, key)
    kind = "HMAC (key from STATECORE_HMAC_KEY)" if key else "unkeyed BLAKE2b"
    if not result.ok:
        hint = ""
        if result.all_links_fail:
            hint = "; no link holds, so the chain was most likely written with a different key" + (
                " (STATECORE_HMAC_KEY is set)" if key else " (STATECORE_HMAC_KEY is not set)"
            )
        raise CLIError(
            f"run {run_id}: hash chain BROKEN at event {result.broken_at} of "
            f"{result.events}: {result.reason}{hint}"
        )
    try:
        view = fold(events, run_id=run_id)
    except CorruptEvent as exc:
        raise CLIError(f"run {run_id}: the chain holds but the log cannot be read: {exc}") from exc
    click.echo(f"run {run_id}: {result.events} events, hash chain intact ({kind})")
    for problem in view.problems:
        click.echo(f"warning: {problem}", err=True)
    click.echo(f"head {result.head} (after event {events[-1].seq})")
    if expect_head is not None and expect_head.strip().lower() != result.head:
        raise CLIError(
            f"run {run_id}: head hash {result.head} is not the expected {expect_head}: "
            "the log was changed (or extended) since that head was recorded"
        )


@cli.command()
@click.argument("run_id")
@_store_option
@_translate_errors
def cancel(run_id: str, store_url: str | None) -> None:
    """Ask the process driving RUN_ID to cancel it."""
    with _store(store_url, run_id=run_id) as store:
        view = _load_view(store, run_id)
        if view.finished():
            click.echo(f"run {run_id} already finished ({view.flow_state.name}); nothing to cancel")
            return
        now = time.time_ns()
        store.request_cancel(run_id, now=now)
        lease = store.get_lease(run_id)
    if lease is not None and lease.expires > now:
        click.echo(
            f"cancel requested for run {run_id}; its driver {lease.owner} will start no "
            "more tasks, unstarted tasks end Cancelled and so does the flow"
        )
    else:
        click.echo(
            f"cancel requested for run {run_id}, but no process is driving it now (no live "
            "lease); it will be cancelled when it is next resumed"
        )


@cli.command()
@click.option(
    "--before",
    required=True,
    metavar="TIME",
    help="Delete finished runs that ended before this time.",
)
@_store_option
@_translate_errors
def prune(before: str, store_url: str | None) -> None:
    """Delete finished runs (their events, leases and metadata) that ended before TIME."""
    cutoff = parse_time(before)
    chosen = store_url or default_store_url()
    if _missing_sqlite_file(chosen) is not None:
        click.echo(f"no runs in store {chosen} (no database file yet)")
        return
    with _store(chosen) as store:
        pruned = store.prune(before=cutoff)
        click.echo(
            f"pruned {pruned} finished run(s) that ended before {iso_time(cutoff)} from {store.url}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    """The ``statecore`` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="statecore")
