"""`lorebook personas list|show|create`: conversation recipes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer
from rich.table import Table

from lorebook.chat.moments import MomentsConfig, read_moments
from lorebook.chat.persona import Persona, list_personas, load_persona, save_persona
from lorebook.cli.common import console, friendly_errors
from lorebook.errors import InputError

MOMENTS_HELP = {f.name: f.metadata["help"] for f in dataclasses.fields(MomentsConfig)}

personas_app = typer.Typer(help="List, show and create personas.", no_args_is_help=True)


@personas_app.command("list")
@friendly_errors
def list_() -> None:
    """Shipped and user personas."""
    table = Table("name", "model", "language", "adapters", "description")
    for persona in list_personas():
        table.add_row(persona.name, persona.model or "default", persona.language, ", ".join(persona.adapters) or "-",
                      persona.description)
    console.print(table)


@personas_app.command()
@friendly_errors
def show(name: str = typer.Argument(..., help="persona name or YAML file")) -> None:
    """A persona's recipe as YAML."""
    persona = load_persona(name)
    console.print(f"# {persona.source}")
    console.print(persona.to_yaml(), markup=False)


@personas_app.command()
@friendly_errors
def create(
    name: str = typer.Argument(..., help="name of the new persona"),
    base: str = typer.Option("assistant", "--from", help="persona to start from"),
    model: str = typer.Option(None, "--model", "-m", help="base model"),
    adapter: list[str] = typer.Option(None, "--adapter", "-a", help="LoRA adapters"),
    system: str = typer.Option(None, "--system", "-s", help="system prompt"),
    language: str = typer.Option(None, "--language", help="reply language code, e.g. es"),
    moments: Path = typer.Option(None, "--moments", help=MOMENTS_HELP["file"] + " (each reply the best of "
                                 "several; see README)"),
    candidates: int = typer.Option(None, "--candidates", help=MOMENTS_HELP["candidates"] + " (with --moments)"),
) -> None:
    """Save a new persona in your data directory (copying --from and applying the options)."""
    persona: Persona = load_persona(base)
    persona.name = name
    persona.model = model or persona.model
    persona.adapters = list(adapter) if adapter else persona.adapters
    persona.system = system if system is not None else persona.system
    persona.language = language or persona.language
    if moments is not None or candidates is not None:
        if moments is None and persona.moments is None:
            raise InputError("--candidates needs moments", "add --moments FILE.jsonl (chat JSONL examples)")
        settings = dataclasses.asdict(persona.moments) if persona.moments else {}
        if moments is not None:
            settings["file"] = str(moments.expanduser().resolve())
        if candidates is not None:
            settings["candidates"] = candidates
        persona.moments = MomentsConfig.from_yaml(settings, name)
        read_moments(persona.moments.file)  # refuse a missing or malformed file now, not at the first reply
    console.print(f"saved {save_persona(persona)}")


def register(app: typer.Typer) -> None:
    app.add_typer(personas_app, name="personas")
