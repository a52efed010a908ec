"""``statecore ui`` (the web page) and ``statecore timeline`` (fitted to the terminal).

Both read the store only. ``cli/__init__.py`` registers them on the command group,
``timeline`` replacing the one in ``main`` by name.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import webbrowser
from pathlib import Path

import click

from statecore.cli.errors import CLIError, translate_errors
from statecore.cli.main import (
    _check_output,
    _console,
    _damaged,
    _load_intact,
    _store,
    _store_option,
    _write_atomically,
)
from statecore.cli.timeline import fitted_gantt
from statecore.fold import RunView

__all__ = ["embedded_page", "timeline", "ui"]


def embedded_page(view: RunView) -> str:
    """The ``ui`` page for one run, with its assets and the run's document inlined
    (``timeline --html``): the same script draws it, offline, from a file."""
    from statecore.ui.model import run_document
    from statecore.ui.server import static_text

    doc = run_document(view, lazy=False)  # a file has no server to ask for children
    doc["log_head"] = view.head
    data = json.dumps(doc, separators=(",", ":"), default=repr)
    # inside <script>, only "</" could end the element early (and "<!--" confuse it)
    data = data.replace("</", "<\\/").replace("<!--", "<\\!--")
    css = static_text("app.css")
    js = static_text("app.js").replace("</", "<\\/")
    import html

    title = html.escape(f"{view.flow_name} · run {view.run_id}")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{css}</style></head><body>"
        '<nav id="nav"><span id="home">statecore</span> <span id="crumbs"></span></nav>'
        '<main id="app"></main>'
        f'<script type="application/json" id="statecore-data">{data}</script>'
        f"<script>{js}</script></body></html>\n"
    )


@click.command()
@click.argument("run_id")
@click.option(
    "--html",
    "html_out",
    type=click.Path(path_type=Path),
    default=None,
    metavar="OUT.html",
    help="Write a self-contained HTML page (the ui's run page, offline) instead.",
)
@click.option("--children", is_flag=True, help="One row per mapped child (default: one per map).")
@click.option(
    "--width",
    type=click.IntRange(40, 1000),
    default=None,
    help="Columns (default: the terminal's).",
)
@_store_option
@translate_errors
def timeline(
    run_id: str, html_out: Path | None, children: bool, width: int | None, store_url: str | None
) -> None:
    """Draw a Gantt of the run's task attempts (terminal, or HTML with --html)."""
    if html_out is not None:
        _check_output(html_out, "--html")
    with _store(store_url, run_id=run_id) as store:
        view, damage = _load_intact(store, run_id)
    if html_out is not None:
        _write_atomically(html_out, embedded_page(view), "--html")
        click.echo(f"wrote {html_out}")
    else:
        cols = width or (
            shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else 100
        )
        console = _console()
        console.width = max(cols, 40)
        for line in fitted_gantt(view, width=cols, children=children):
            console.print(line, overflow="crop", no_wrap=True)
    if damage is not None:
        _damaged(damage)


@click.command()
@_store_option
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="0: any free port.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface; any but loopback needs the printed token.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a browser.")
@translate_errors
def ui(store_url: str | None, port: int, host: str, open_browser: bool) -> None:
    """Serve a local web page of the store's runs: history, timelines, time travel."""
    from statecore.ui.server import make_server

    with _store(store_url) as store:
        try:
            server = make_server(store, host=host, port=port)
        except OSError as exc:
            raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        click.echo(f"statecore ui on {server.url} (store {store.url}); Ctrl-C stops it", err=False)
        sys.stdout.flush()
        if open_browser:
            threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
