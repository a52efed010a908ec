"""The ``statecore`` command: run, resume and audit flows from the shell.

Commands (``statecore COMMAND --help`` for each)::

    run FILE.py:FLOW [-p KEY=VALUE ...] [--run-id ID]     run a flow
    run FILE.py:FLOW --on-schedule [--max-runs N] [--catch-up]   run it on its schedule
    schedule FILE.py:FLOW [--next N] [--after T]          the schedule's next start times
    resume RUN_ID --flow FILE.py:FLOW [--approve TASK ...] [--allow-changed]
    rerun RUN_ID --from TASK --flow FILE.py:FLOW          new run reusing what is upstream
    runs [--flow NAME] [--state STATE] [--since T] [--until T] [--limit N]
    show RUN_ID [--children] [--errors] [--at T | --seq N]   task states, attempts, durations
    timeline RUN_ID [--children] [--width N] [--html OUT.html]   Gantt of task attempts
    ui [--port 8765] [--host 127.0.0.1] [--open]          local web page over the store
    logs RUN_ID [--errors]                                the tasks' log lines and run notes
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
or an age such as ``30m``, ``12h``, ``7d``; ``show --at`` takes the same.

``run``, ``resume`` and ``rerun`` print the ``statecore`` logger's records on stderr
(Prefect 1's lines: flow and task starts, retries, failures with the traceback) at INFO;
``-v`` shows DEBUG too, ``-q`` only warnings and errors.

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
import sys
import tempfile
import time
import uuid
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

from statecore.audit import export_records, iso_time, log_lines, verify_chain
from statecore.backends import default_store_url, open_store
from statecore.backends.base import Store
from statecore.cli.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_UNFINISHED,
    EXIT_USAGE,
    CLIError,
    translate_errors,
)
from statecore.cli.failures import failure_lines
from statecore.cli.graph import render_dot, render_mermaid
from statecore.cli.log_output import cli_logging, level_for
from statecore.cli.progress import RunProgress
from statecore.cli.report import print_outcome, styled_state, tasks_table
from statecore.cli.schedule import parse_after, print_next, run_scheduled, schedule_of
from statecore.cli.timeline import printable
from statecore.cli.times import format_duration, parse_time
from statecore.errors import CorruptEvent, RunNotFound
from statecore.flow import Flow
from statecore.fold import RunView, fold
from statecore.graph import Graph
from statecore.runners.journal import hmac_key
from statecore.runners.loading import FlowLoadError, load_flow
from statecore.runners.local import check_parameters, replay, resume, run_flow
from statecore.runners.local import rerun as rerun_flow
from statecore.states import State, state_class

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

_P = ParamSpec("_P")
_R = TypeVar("_R")

# doctest collects only a module's own functions; the tests run this module's examples,
# so name those of the helpers that moved out of it here to keep them running.
__test__ = {"parse_time": parse_time, "format_duration": format_duration}


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


def _load_intact(store: Store, run_id: str) -> tuple[RunView, str | None]:
    """The run as far as its log is intact, and what is damaged (None: nothing).

    A damaged log never hides its readable part: readers show the run as of the event
    before the first one the fold refuses, name that event, and exit 2."""
    if store.head(run_id) == 0:
        _not_found(run_id, store)
    from statecore.ui.model import load_view

    view, damage = load_view(store, run_id, None)
    if damage is None:
        return view, None
    bad = damage["first_bad_seq"]
    return view, (
        f"the log of run {run_id!r} is damaged at event {bad} of {store.head(run_id)} "
        f"({damage['error']}); shown: the run as of event {bad - 1}"
    )


def _damaged(message: str) -> NoReturn:
    click.echo(printable(f"Error: {message}"), err=True)
    sys.exit(EXIT_USAGE)


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


# -- parsing ----------------------------------------------------------------------------


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
    if path.exists() and not path.is_file():
        # a device node, pipe or socket: writing "atomically" would replace the node itself
        raise CLIError(
            f"{option} {str(path)!r} is not a regular file (a device, pipe or socket); "
            "give a new path or a regular file"
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CLIError(f"{option} {str(path)!r}: the directory {str(parent)!r} does not exist")
    if path.exists() and not os.access(path, os.W_OK):
        raise CLIError(f"{option} {str(path)!r} is not writable")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"{option} {str(path)!r}: the directory {str(parent)!r} is not writable")


def _write_atomically(path: Path, text: str, option: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place.

    A symbolic link is followed: the file it names is replaced, the link kept."""
    if path.is_symlink():
        path = Path(os.path.realpath(path))
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


def _verbosity(fn: Callable[..., _R]) -> Callable[..., _R]:
    """``-v/--verbose`` and ``-q/--quiet``: the level of the log records on stderr."""

    @functools.wraps(fn)
    def wrapper(*args: Any, verbose: bool, quiet: bool, **kwargs: Any) -> _R:
        if verbose and quiet:
            raise CLIError("-v/--verbose and -q/--quiet exclude each other")
        with cli_logging(level_for(verbose, quiet)):
            return fn(*args, **kwargs)

    wrapper = click.option(
        "-q", "--quiet", is_flag=True, help="Log only warnings and errors on stderr."
    )(wrapper)
    return click.option(
        "-v", "--verbose", is_flag=True, help="Log DEBUG records too on stderr (default: INFO)."
    )(wrapper)


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
@click.option(
    "--on-schedule",
    is_flag=True,
    help="Run at each start time of the flow's schedule, one run per slot, until stopped.",
)
@click.option(
    "--max-runs", type=click.IntRange(min=1), default=None, help="With --on-schedule: stop after N."
)
@click.option("--catch-up", is_flag=True, help="With --on-schedule: run slots missed while down.")
@click.option(
    "--prefect1",
    is_flag=True,
    help="Serve `import prefect` with statecore (Prefect 1 flows unchanged); also "
    "STATECORE_PREFECT1=1.",
)
@_store_option
@translate_errors
@_verbosity
def run(
    flow_ref: str,
    params: tuple[str, ...],
    run_id: str | None,
    on_schedule: bool,
    max_runs: int | None,
    catch_up: bool,
    prefect1: bool,
    store_url: str | None,
) -> None:
    """Run the flow FLOW defined in FILE.py (once, or with --on-schedule on its schedule)."""
    values = parse_parameters(params)
    if not on_schedule and (max_runs is not None or catch_up):
        raise CLIError("--max-runs and --catch-up go with --on-schedule")
    if on_schedule and run_id is not None:
        raise CLIError("--run-id cannot be used with --on-schedule: each slot has its own run id")
    from statecore.compat import install_if  # the layer only when a run may need it

    install_if(prefect1)
    flow = _load(flow_ref)
    if on_schedule:
        schedule_of(flow, flow_ref)
        unknown = sorted(set(values) - {p.name for p in flow.parameters()})
        if unknown:
            raise CLIError(f"unknown parameters for flow {flow.name!r}: {', '.join(unknown)}")
        with _store(store_url) as store:
            sys.exit(
                run_scheduled(_console(), flow, store, values, max_runs=max_runs, catch_up=catch_up)
            )
    try:
        check_parameters(Graph(flow), values)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    console = _console()
    with _store(store_url) as store:
        run_id = run_id or uuid.uuid4().hex
        existed = store.head(run_id) > 0
        try:
            with _interruptible(console, run_id, flow_ref), RunProgress(store, run_id):
                state = run_flow(flow, parameters=values, store=store, run_id=run_id)
        except ValueError as exc:  # another flow's or other parameters' run id
            raise CLIError(str(exc)) from exc
        if existed:
            console.print(f"run {run_id} already existed; it was continued, not started anew")
        print_outcome(console, replay(store, run_id), flow_ref)
    sys.exit(_exit_for(state))


@cli.command(name="schedule")
@click.argument("flow_ref", metavar="FILE.py:FLOW")
@click.option("--next", "count", default=5, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--after", default=None, metavar="TIME", help="Start times after this (default: now)."
)
@_store_option
@translate_errors
def schedule_command(flow_ref: str, count: int, after: str | None, store_url: str | None) -> None:
    """Print the next start times of FLOW's schedule and each slot's run id."""
    flow = _load(flow_ref)
    schedule = schedule_of(flow, flow_ref)
    since = parse_after(after)
    url = store_url or default_store_url()
    console = _console()
    if _missing_sqlite_file(url) is not None:
        print_next(console, flow, schedule, count, since, None)
        return
    with _store(url) as store:
        print_next(console, flow, schedule, count, since, store)


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
@translate_errors
@_verbosity
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
        with _interruptible(console, run_id, flow_ref), RunProgress(store, run_id):
            state = resume(
                run_id,
                flow,
                store=store,
                approve=[graph.nodes[i].key for i in approved],
                allow_changed=allow_changed,
            )
        print_outcome(console, replay(store, run_id), flow_ref)
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
@translate_errors
@_verbosity
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
        with _interruptible(console, new_run_id, flow_ref), RunProgress(store, new_run_id):
            state = rerun_flow(
                run_id,
                flow,
                from_task,
                store=store,
                new_run_id=new_run_id,
                allow_changed=allow_changed,
            )
        console.print(f"rerun of {run_id} from {from_task}:")
        print_outcome(console, replay(store, new_run_id), flow_ref)
        click.echo(new_run_id)
    sys.exit(_exit_for(state))


@cli.command()
@click.option("--flow", "flow_name", default=None, help="Only runs of this flow (its name).")
@click.option("--state", default=None, help="Only runs whose flow state is this (Success, ...).")
@click.option("--since", default=None, metavar="TIME", help="Only runs started at or after.")
@click.option("--until", default=None, metavar="TIME", help="Only runs started before.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@_store_option
@translate_errors
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
        table = Table(title=printable(f"runs in {store.url}"))
        for column in ("run", "flow", "state", "started (UTC)", "duration", "events", "parent"):
            table.add_column(column, justify="right" if column == "events" else "left")
        for meta in found:
            duration = format_duration(meta.ended - meta.started) if meta.ended is not None else ""
            table.add_row(
                printable(meta.run_id),
                printable(meta.flow_name),
                styled_state(meta.state),
                iso_time(meta.started)[:19].replace("T", " "),
                duration,
                str(meta.head),
                printable(meta.parent_run or ""),
            )
        console.print(table)


def _at_time(text: str) -> datetime:
    try:
        ns = parse_time(text)
    except click.BadParameter as exc:
        raise click.BadParameter(exc.message, param_hint="'--at'") from None
    return _EPOCH + timedelta(microseconds=ns // 1000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _view_until(store: Store, run_id: str, at: str | None, seq: int | None) -> RunView:
    """The run as of event ``seq`` or instant ``at`` (both None: all of it)."""
    if at is not None and seq is not None:
        raise CLIError("--at and --seq exclude each other: give one")
    if at is None and seq is None:
        raise AssertionError("the caller reads the whole run with _load_intact")
    when = _at_time(at) if at is not None else None
    head = store.head(run_id)
    if head == 0:
        _not_found(run_id, store)
    if seq is not None and seq > head:
        raise CLIError(f"--seq {seq}: run {run_id} has {head} events (--seq 1 to {head})")
    try:
        return replay(store, run_id, until=seq if when is None else when)
    except RunNotFound:
        if when is None:
            raise
        first = store.read(run_id, limit=1)
        since = f"; its first event is at {iso_time(first[0].ts)}" if first else ""
        raise CLIError(
            f"--at {at}: run {run_id} has no event at or before {when.isoformat()}{since}"
        ) from None


@cli.command()
@click.argument("run_id")
@click.option("--children", is_flag=True, help="List every mapped child, not a summary.")
@click.option(
    "--errors",
    is_flag=True,
    help="Print each failed task's and mapped child's stored traceback after the table.",
)
@click.option(
    "--at",
    default=None,
    metavar="TIME",
    help="Show the run as it was at TIME (ISO 8601, UTC unless it has an offset, or an "
    "age such as 30m): the events logged at or before it.",
)
@click.option(
    "--seq",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Show the run as it was after its event N (1 is the first).",
)
@_store_option
@translate_errors
def show(
    run_id: str,
    children: bool,
    errors: bool,
    at: str | None,
    seq: int | None,
    store_url: str | None,
) -> None:
    """Show a run: its flow state, and each task's state, attempts and duration.

    With --at or --seq, the run as of that instant or event (the same fold, stopped
    early); the exit status is then that earlier state's.
    """
    console = _console()
    damage: str | None = None
    with _store(store_url, run_id=run_id) as store:
        if at is None and seq is None:
            view, damage = _load_intact(store, run_id)
        else:
            view = _view_until(store, run_id, at, seq)
        total = store.head(run_id)
        lease = store.get_lease(run_id) if at is None and seq is None else None
    state = view.flow_state
    head = Text(printable(f"{view.flow_name} · run {view.run_id} · "))
    head.append_text(styled_state(state))
    if state.message:
        head.append(printable(f": {state.message}"))
    console.print(head)
    if at is not None or seq is not None:
        last = view.last_event
        when = f" ({iso_time(last.ts)})" if last is not None else ""
        console.print(f"as of event {view.head} of {total}{when}")
    if view.started is not None:
        ended = view.ended if view.ended is not None else None
        when = f"started {iso_time(view.started)}"
        if ended is not None:
            when += f", ended {iso_time(ended)} ({format_duration(ended - view.started)})"
        console.print(when)
    if view.parent_run:
        console.print(f"rerun of {view.parent_run}")
    if view.parameters:
        console.print(f"parameters: {json.dumps(view.parameters, default=repr, sort_keys=True)}")
    if lease is not None and lease.expires > time.time_ns() and not view.finished():
        console.print(f"driven by {lease.owner} (lease epoch {lease.epoch})")
    console.print(tasks_table(view, children=children))
    for ts, note in view.notes:
        console.print(printable(f"note {iso_time(ts)} [{note.code}] {note.message}"))
    for problem in view.problems:
        console.print(Text(printable(f"problem in the log: {problem}"), style="bold red"))
    if errors:
        console.print("")
        for line in failure_lines(view):
            console.print(line, soft_wrap=True)
    if damage is not None:
        _damaged(damage)
    sys.exit(_exit_for(state))


@cli.command()
@click.argument("run_id")
@click.option(
    "--notes/--no-notes",
    default=True,
    show_default=True,
    help="Include run notes (code changed, interruptions, ...).",
)
@click.option(
    "--errors",
    is_flag=True,
    help="After the log lines, print each failed task's and mapped child's stored traceback.",
)
@_store_option
@translate_errors
def logs(run_id: str, notes: bool, errors: bool, store_url: str | None) -> None:
    """Print the log lines the run's tasks wrote through context['logger']."""
    with _store(store_url, run_id=run_id) as store:
        view, damage = _load_intact(store, run_id)
    lines = log_lines(view, notes=notes)
    if not lines:
        click.echo(f"run {run_id}: no log lines", err=True)
    for line in lines:
        click.echo(printable(f"{iso_time(line.ts)} {line.level:<7} {line.source}: {line.message}"))
    if errors:
        click.echo(f"failures in run {printable(run_id)}:")
        for text in failure_lines(view):
            click.echo(text)
    if damage is not None:
        _damaged(damage)


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
@translate_errors
def export(run_id: str, output: Path | None, store_url: str | None) -> None:
    """Print the run's log as JSON lines, one event per line.

    Fields: run_id, seq, ts (UTC ns), ts_iso, epoch, kind, prev_hash (hex), then the
    decoded body (see statecore.audit for the schema).
    """
    if output is not None:
        _check_output(output, "--output")
    with _store(store_url, run_id=run_id) as store:
        events = store.read(run_id)
    if not events:
        _not_found(run_id, store)
    records = list(export_records(events, keep_damaged=True))
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    text = "\n".join(lines) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        _write_atomically(output, text, "--output")
        click.echo(f"wrote {len(lines)} events to {output}", err=True)
    damaged = [r for r in records if "damaged" in r]
    if damaged:
        first = damaged[0]
        _damaged(
            f"the log of run {run_id!r} has {len(damaged)} damaged event(s), the first "
            f"event {first['seq']} ({first['damaged']}); each is exported with its stored "
            "bytes (payload_hex)"
        )


@cli.command()
@click.argument("flow_ref", metavar="FILE.py:FLOW")
@click.option(
    "--format", "fmt", type=click.Choice(["dot", "mermaid"]), default="dot", show_default=True
)
@click.option("--run", "run_id", default=None, help="Colour tasks by this run's states.")
@_store_option
@translate_errors
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
    render = render_dot if fmt == "dot" else render_mermaid
    click.echo(render(flow.name, record, states))


@cli.command()
@click.argument("run_id")
@click.option(
    "--expect-head",
    default=None,
    metavar="HEX",
    help="The head hash recorded earlier; a different one is an error.",
)
@_store_option
@translate_errors
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
@translate_errors
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
@translate_errors
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
