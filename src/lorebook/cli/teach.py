"""`lorebook teach` (LoRA training), `lorebook sweep`, and `lorebook adapters list|show|scope|rm|merge|export`.

The training flags are generated from TeachConfig's fields and their help metadata, so adding an
option to the dataclass adds it to the CLI, the sweep grid and the saved JSON at once.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import typer

from lorebook.cli.common import console, friendly_errors
from lorebook.teach.config import TeachConfig

adapters_app = typer.Typer(help="List, inspect, scope, remove, merge and export trained LoRA adapters.", no_args_is_help=True)


def config_options() -> list[inspect.Parameter]:
    """One typer option per TeachConfig field (default None = keep the dataclass or --config value)."""
    params = []
    for item in dataclasses.fields(TeachConfig):
        flag = item.metadata.get("flag", "--" + item.name.replace("_", "-"))
        annotation = {"int": int, "float": float, "bool": bool, "str": str}.get(str(item.type), str)
        decls = [f"{flag}/--no-{flag[2:]}"] if annotation is bool else [flag, *item.metadata.get("aliases", [])]
        option = typer.Option(None, *decls, help=f"{item.metadata['help']} [default: {item.default}]",
                              rich_help_panel="Training options")
        params.append(inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=annotation | None))
    return params


def build_config(config_file: Path | None, values: dict) -> TeachConfig:
    """The dataclass defaults, then a --config JSON, then explicit flags."""
    base = TeachConfig.load(config_file) if config_file else TeachConfig()
    changes = {key: value for key, value in values.items() if value is not None}
    return base.with_values(**changes) if changes else base


def print_metrics(result) -> None:
    metrics = result.metrics
    console.print(f"adapter [bold]{result.name}[/] saved to {result.path}")
    console.print(
        f"loss {metrics['first_loss']} -> {metrics['final_loss']} in {metrics['epochs']} epochs "
        f"({metrics['steps']} steps, {metrics['examples']} examples, {metrics['train_seconds']} s, "
        f"{metrics['tokens_per_s']} tokens/s)"
    )
    if "recall" in metrics:
        console.print(f"recall on the pack's questions: {metrics['recall']:.0%} of {metrics['facts']} facts")
    if scope := metrics.get("scope"):
        console.print(f"scope: cosine ≥ {scope['threshold']} (calibration: {scope['in_scope_passed']:.0%} of "
                      f"{scope['in_scope']} rewordings in, {scope['out_of_scope_passed']:.0%} of "
                      f"{scope['out_of_scope']} unrelated prompts in); other questions get the base model")
    console.print(f"use it: lorebook ask --adapter {result.name} \"…\"")


def teach_command(
    inputs: list[Path] = typer.Argument(..., help="knowledge pack (.jsonl), chat JSONL, or .txt files"),
    name: str = typer.Option(..., "--name", "-n", help="adapter name (saved under the data home)"),
    config_file: Path = typer.Option(None, "--config", help="start from a saved teach-config.json"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run of this --name"),
    restart: bool = typer.Option(False, "--restart", help="discard an interrupted run of this --name"),
    force: bool = typer.Option(False, "--force", help="replace an existing adapter of this name"),
    probe: bool = typer.Option(True, "--probe/--no-probe", help="ask the pack's questions after training"),
    allow_lint: bool = typer.Option(False, "--allow-lint", help="train even if `lorebook lint` finds high-severity problems"),
    **options,
) -> None:
    """Teach a model the facts in a knowledge pack (or a chat/text file) with a LoRA adapter."""
    from lorebook.redteam.lint import check_before_teaching
    from lorebook.teach.trainer import teach

    config = build_config(config_file, options)
    # Poisoned records (instructions, triggers, hidden blobs) are refused before any training starts.
    for finding in check_before_teaching(inputs, allow=allow_lint):
        console.print(f"lint (allowed): line {finding.line}: {finding.message}", markup=False)
    result = teach(inputs, name, config, resume=resume, restart=restart, force=force, probe=probe)
    print_metrics(result)


def _with_config_flags(func):
    """Give `func` a signature with the TeachConfig options appended (typer reads __signature__)."""
    signature = inspect.signature(func)
    fixed = [p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    func.__signature__ = signature.replace(parameters=fixed + config_options())
    return func


def sweep_command(
    pack: Path = typer.Argument(..., help="knowledge pack (.jsonl)"),
    grid: list[str] = typer.Option([], "--grid", "-g", help="OPTION=v1,v2,… (repeat); every combination runs"),
    trials: int = typer.Option(0, "--trials", help="with Optuna: this many TPE trials instead of a grid"),
    storage: str = typer.Option("", "--storage", help="Optuna storage URL (default: sqlite file in the data home)"),
    study: str = typer.Option("", "--study", help="Optuna study name (workers sharing it cooperate)"),
    prefix: str = typer.Option("sweep", "--prefix", help="trial adapters are named PREFIX-N"),
    keep: bool = typer.Option(False, "--keep", help="keep every trial's adapter, not only the best"),
    config_file: Path = typer.Option(None, "--config", help="base options from a teach-config.json"),
) -> None:
    """Search training options; scores each trial by recall gained minus knowledge lost."""
    from lorebook.teach.sweep import parse_grid, run_grid, run_optuna

    base = build_config(config_file, {})
    if trials:
        results = run_optuna(pack, base, parse_grid(grid), trials, storage, study, prefix, keep)
    else:
        results = run_grid(pack, base, parse_grid(grid), prefix, keep)
    from rich.table import Table

    table = Table("trial", "options", "exact", "paraphrase", "lost", "score", "seconds")
    for row in sorted(results, key=lambda r: -r["score"]):
        table.add_row(row["name"], " ".join(f"{k}={v}" for k, v in row["options"].items()),
                      f"{row['exact']:.0%}", f"{row['paraphrase']:.0%}", f"{row['lost']:.0%}",
                      f"{row['score']:.3f}", f"{row['seconds']:.0f}")
    console.print(table)
    best = max(results, key=lambda r: r["score"])
    console.print(f"best: {best['name']} " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in best["options"].items()))


@adapters_app.command("list")
@friendly_errors
def adapters_list(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Trained adapters in the data home."""
    from lorebook.teach import store

    found = store.list_adapters()
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    if not found:
        console.print("no adapters yet; train one with `lorebook teach PACK --name NAME`")
        return
    for meta in found:
        metrics = meta.get("metrics", {})
        recall = f"recall {metrics['recall']:.0%}" if "recall" in metrics else ""
        console.print(f"{meta['name']:<24} base {meta.get('base_model')!s:<16} "
                      f"{meta['size_bytes'] / 1e6:6.1f} MB  {meta.get('created', '')}  {recall}")


@adapters_app.command("show")
@friendly_errors
def adapters_show(name: str = typer.Argument(..., help="adapter name")) -> None:
    """An adapter's base model, training options, metrics and loss curve."""
    from lorebook.teach import store

    directory = store.find(name)
    meta = store.read_meta(directory)
    typer.echo(json.dumps(meta, indent=2))
    curve_path = directory / store.CURVE_FILE
    if curve_path.exists():
        losses = [point["loss"] for point in json.loads(curve_path.read_text())]
        typer.echo("loss curve: " + sparkline(losses))


def sparkline(values: list[float], width: int = 60) -> str:
    if not values:
        return ""
    step = max(1, len(values) // width)
    sampled = values[::step]
    low, high = min(sampled), max(sampled)
    bars = "▁▂▃▄▅▆▇█"
    return "".join(bars[int((v - low) / (high - low + 1e-12) * 7)] for v in sampled) + f"  {values[0]:.3g} → {values[-1]:.3g}"


@adapters_app.command("rm")
@friendly_errors
def adapters_rm(names: list[str] = typer.Argument(..., help="adapter names")) -> None:
    """Delete adapters."""
    from lorebook.teach import store

    for name in names:
        console.print(f"removed {store.remove(name)}")


@adapters_app.command("scope")
@friendly_errors
def adapters_scope(
    name: str = typer.Argument(..., help="adapter name"),
    state: str = typer.Argument(None, help="'on' (route by scope), 'off' (always on), or nothing to show it"),
    query: list[str] = typer.Option([], "--query", "-q", help="show whether these questions are in scope"),
) -> None:
    """Show or switch an adapter's scope: in-scope questions get the adapter, the rest the base model."""
    from lorebook.errors import InputError
    from lorebook.teach import store
    from lorebook.teach.scope import AdapterScope

    directory = store.find(name)
    scope = AdapterScope.load(directory)
    if scope is None:
        raise InputError(f"adapter {name!r} has no scope (persona/chat adapters, or taught with --no-scope)",
                         "it applies to every request; re-teach a knowledge pack with --scope to get one")
    if state is not None:
        if state not in ("on", "off"):
            raise InputError(f"unknown scope state {state!r}", "use `on` or `off`")
        scope.enabled = state == "on"
        scope.save(directory)
    console.print(f"{name}: scope {'on' if scope.enabled else 'off (adapter always applies)'}, "
                  f"{len(scope.texts)} texts, threshold {scope.threshold}, calibration {scope.report}")
    for text, score in zip(query, scope.scores(query)):
        verdict = "in scope → adapter" if score >= scope.threshold else "out of scope → base model"
        console.print(f"  {score:.3f}  {verdict}: {text}")


@adapters_app.command("merge")
@friendly_errors
def adapters_merge(
    names: list[str] = typer.Argument(..., help="adapters to merge (in order)"),
    output: Path = typer.Option(..., "--output", "-o", help="directory for the merged model"),
    model: str = typer.Option(None, "--model", help="base model (default: the adapter's)"),
    force: bool = typer.Option(False, "--force", help="overwrite a non-empty output directory"),
) -> None:
    """Merge adapters into the base weights: a standalone safetensors model (use with --model DIR)."""
    from lorebook.teach.adapters import merge

    path = merge(names, output, model, force)
    console.print(f"merged model written to {path}; try: lorebook ask --model {path} \"…\"")


@adapters_app.command("export")
@friendly_errors
def adapters_export(
    name: str = typer.Argument(..., help="adapter name"),
    gguf: bool = typer.Option(False, "--gguf", help="write a GGUF LoRA adapter for llama.cpp"),
    output: Path = typer.Option(None, "--output", "-o", help="file to write (default: adapter.gguf in the adapter)"),
) -> None:
    """Export an adapter for other runtimes (GGUF LoRA for llama.cpp: --engine llamacpp --adapter NAME)."""
    from lorebook.errors import InputError
    from lorebook.teach.adapters import export_gguf

    if not gguf:
        raise InputError("no export format chosen", "pass --gguf (GGUF LoRA for llama.cpp)")
    path = export_gguf(name, output)
    console.print(f"GGUF LoRA adapter written to {path}; try: lorebook ask --engine llamacpp --adapter {name} \"…\"")


def register(app: typer.Typer) -> None:
    app.command("teach", help=teach_command.__doc__)(friendly_errors(_with_config_flags(teach_command)))
    app.command("sweep", help=sweep_command.__doc__)(friendly_errors(sweep_command))
    app.add_typer(adapters_app, name="adapters")
