"""`lorebook logs list|show`: the conversations recorded in SQLite."""

from __future__ import annotations

import datetime as dt
import json

import typer
from rich.table import Table

from lorebook.chat import store
from lorebook.cli.common import console, friendly_errors

logs_app = typer.Typer(help="Browse logged conversations.", no_args_is_help=True)


@logs_app.command("list")
@friendly_errors
def list_(limit: int = typer.Option(20, "--limit", "-n", help="how many, newest first"),
          as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """The most recent conversations."""
    rows = store.list_conversations(store.connect(), limit)
    if as_json:
        console.print_json(json.dumps([row.__dict__ for row in rows]))
        return
    table = Table("id", "started", "persona", "model", "msgs", "title")
    for row in rows:
        started = dt.datetime.fromtimestamp(row.started_at).strftime("%Y-%m-%d %H:%M")
        table.add_row(str(row.id), started, row.persona or "-", row.model, str(row.messages), row.title)
    console.print(table)


@logs_app.command()
@friendly_errors
def show(conversation_id: int = typer.Argument(..., help="id from `lorebook logs list`"),
         as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """One conversation, message by message."""
    messages = store.conversation_messages(store.connect(), conversation_id)
    if as_json:
        console.print_json(json.dumps([dict(m) for m in messages]))
        return
    for message in messages:
        extra = ""
        if message["completion_tokens"]:
            extra = f"  [dim]({message['completion_tokens']} tokens, {message['seconds']:.1f} s)[/]"
        console.print(f"[bold]{message['role']}[/]: {message['content']}{extra}")


def register(app: typer.Typer) -> None:
    app.add_typer(logs_app, name="logs")
