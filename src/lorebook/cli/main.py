"""Entry point: `lorebook`. Each module in GROUPS adds its commands through `register(app)`."""

from __future__ import annotations

import importlib
import importlib.util

import typer

from lorebook import __version__

app = typer.Typer(
    name="lorebook",
    help="Talk with a local language model, teach it what you know, and measure what it learned. Offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command-group modules under lorebook.cli; a module not yet written is skipped.
GROUPS = (
    "talk_text",  # ask, chat
    "models",  # models list|show|fetch
    "logs",  # logs list|show
    "personas",  # personas list|show
    "teach",
    "evaluate",
    "notebook",
    "voice",
    "serve",
    "synth",
    "lab",
    "redteam",
)


def _register_groups() -> None:
    for name in GROUPS:
        module_name = f"lorebook.cli.{name}"
        if importlib.util.find_spec(module_name) is not None:
            importlib.import_module(module_name).register(app)


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="print the version and exit")) -> None:
    if version:
        typer.echo(f"lorebook {__version__}")
        raise typer.Exit()


_register_groups()
