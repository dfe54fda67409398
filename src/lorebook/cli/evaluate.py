"""`lorebook eval PACK` and `lorebook eval list|show|compare|report`: evaluation runs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer
from rich.table import Table
from typer.core import TyperGroup

from lorebook.cli.common import console, friendly_errors
from lorebook.errors import InputError
from lorebook.evaluate.probes import FACT_FORMATS
from lorebook.evaluate.runner import EvalConfig

HELP = {f.name: f.metadata["help"] for f in dataclasses.fields(EvalConfig)}


class DefaultRunGroup(TyperGroup):
    """`lorebook eval PACK …` means `lorebook eval run PACK …`; subcommands keep their names."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        elif "--scenario" in args and (not args or args[0] not in self.commands):
            args = ["persona", *args]  # persona evaluation: src/lorebook/synth/persona_eval.py
        return super().parse_args(ctx, args)


eval_app = typer.Typer(cls=DefaultRunGroup, no_args_is_help=True,
                       help="Measure what a model learned and forgot: `lorebook eval PACK --adapter NAME`.")


@eval_app.command("run")
@friendly_errors
def run(
    pack: Path = typer.Argument(..., help="knowledge pack (.jsonl)"),
    model: str = typer.Option(None, "--model", "-m", help=HELP["model"]),
    adapter: list[str] = typer.Option([], "--adapter", "-a", help=HELP["adapters"]),
    persona: str = typer.Option(None, "--persona", "-p", help=HELP["persona"]),
    notebook: str = typer.Option(None, "--notebook", "-n", help=HELP["notebook"]),
    formats: str = typer.Option(",".join(FACT_FORMATS),
                                "--formats", help=HELP["formats"]),
    locality: int = typer.Option(210, "--locality", help=HELP["locality"]),
    chat_prompts: int = typer.Option(8, "--chat-prompts", help=HELP["chat_prompts"]),
    max_tokens: int = typer.Option(40, "--max-tokens", help=HELP["max_tokens"]),
    batch_size: int = typer.Option(16, "--batch-size", help=HELP["batch_size"]),
    judge: str = typer.Option(None, "--judge", help=HELP["judge"]),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline", help=HELP["baseline"]),
    report_dir: Path = typer.Option(None, "--report", help="also write report.md/.json/.html and a plot here"),
    as_json: bool = typer.Option(False, "--json", help="print the run (config and metrics) as JSON"),
) -> None:
    """Evaluate a model (with adapters or a persona) on a knowledge pack; stores the run."""
    from lorebook.evaluate import store
    from lorebook.evaluate.report import metrics_table, write_report
    from lorebook.evaluate.runner import EvalConfig, run_eval

    if batch_size < 1 or max_tokens < 1 or locality < 0 or chat_prompts < 0:
        raise InputError("--batch-size and --max-tokens must be positive, --locality/--chat-prompts ≥ 0",
                         "e.g. --batch-size 16 --max-tokens 40")
    config = EvalConfig(model=model, adapters=list(adapter), persona=persona, notebook=notebook,
                        formats=[f.strip() for f in formats.split(",") if f.strip()], locality=locality,
                        chat_prompts=chat_prompts, max_tokens=max_tokens, batch_size=batch_size, judge=judge,
                        baseline=baseline)
    run_id = run_eval(pack, config, progress=not as_json)
    db = store.connect()
    run_row = store.get_run(db, run_id)
    runs = [store.get_run(db, run_row["baseline_run"]), run_row] if run_row["baseline_run"] else [run_row]
    db.close()
    if report_dir:
        write_report(run_id, report_dir)
    if as_json:
        print(json.dumps({"run": run_row, "baseline": runs[0] if len(runs) > 1 else None}, ensure_ascii=False))
        return
    console.print(metrics_table(runs), markup=False)
    console.print(f"stored as eval run {run_id}; side by side: lorebook eval show {run_id}", markup=False)


@eval_app.command("list")
@friendly_errors
def list_runs(limit: int = typer.Option(30, "--limit", help="newest N runs"),
              as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Stored evaluation runs, newest first."""
    from lorebook.evaluate import store

    db = store.connect()
    runs = store.list_runs(db, limit)
    db.close()
    if as_json:
        print(json.dumps(runs, ensure_ascii=False))
        return
    table = Table("run", "status", "model", "adapters", "pack", "efficacy", "locality unchanged", "base run")
    for r in runs:
        table.add_row(str(r["id"]), r["status"], Path(r["model"]).name, ", ".join(r["adapters"]) or "-",
                      Path(r["pack"]).name, _percent(r["metrics"], "efficacy"),
                      _percent(r["metrics"], "locality_unchanged"), str(r["baseline_run"] or ""))
    console.print(table)


def _percent(metrics: dict | None, name: str) -> str:
    value = (metrics or {}).get(name, {}).get("value")
    return "" if value is None else f"{100 * value:.1f}%"


@eval_app.command("show")
@friendly_errors
def show(run_id: int = typer.Argument(..., help="run id from `lorebook eval list`"),
         examples: int = typer.Option(20, "--examples", help="how many generations to show side by side"),
         as_json: bool = typer.Option(False, "--json", help="run, metrics and all generations as JSON")) -> None:
    """Metrics of one run and its generations beside the base model's."""
    from lorebook.evaluate import store
    from lorebook.evaluate.report import markdown, side_by_side

    db = store.connect()
    try:
        run_row = store.get_run(db, run_id)
        if as_json:
            print(json.dumps({"run": run_row, "generations": side_by_side(db, run_row)}, ensure_ascii=False))
            return
        console.print(markdown(db, run_row, examples), markup=False)
    finally:
        db.close()


@eval_app.command("compare")
@friendly_errors
def compare_runs(run_a: int = typer.Argument(..., help="first run (e.g. the base model)"),
                 run_b: int = typer.Argument(..., help="second run (e.g. the taught model)"),
                 as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Per-fact answers of two runs side by side, and the locality answers that changed."""
    from lorebook.evaluate import store
    from lorebook.evaluate.report import compare, metrics_table

    db = store.connect()
    try:
        result = compare(db, run_a, run_b)
    finally:
        db.close()
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
        return
    console.print(metrics_table([result["a"], result["b"]]), markup=False)
    for title, rows in (("facts", result["facts"]), ("changed locality answers", result["changed_locality"])):
        table = Table("probe", "expected", f"run {run_a}", f"run {run_b}", title=f"{title} ({len(rows)})")
        for row in rows:
            table.add_row(row["key"], row["expected"], ("✓ " if row["a_correct"] else "✗ ") + row["a"][:80],
                          ("✓ " if row["b_correct"] else "✗ ") + row["b"][:80])
        console.print(table)


@eval_app.command("report")
@friendly_errors
def report(run_id: int = typer.Argument(..., help="run id"),
           out: Path = typer.Option(None, "--out", "-o", help="output folder (default: ./eval-report-RUN)")) -> None:
    """Write report.md, report.json, metrics.png and a self-contained report.html for a run."""
    from lorebook.evaluate.report import write_report

    written = write_report(run_id, out or Path(f"eval-report-{run_id}"))
    for kind, path in written.items():
        console.print(f"{kind:9} {path}", markup=False)


@friendly_errors
def report_any(target: str = typer.Argument(..., help="an eval run id, or a sweep prefix (see sweeps/ in the data home)"),
               out: Path = typer.Option(None, "--out", "-o", help="output folder (default: ./report-TARGET)")) -> None:
    """Self-contained HTML report of an eval run (metric bars, loss curves) or a sweep (gained vs lost)."""
    from lorebook import paths
    from lorebook.errors import InputError

    folder = out or Path(f"report-{target}")
    if target.isdigit():
        from lorebook.evaluate.report import write_report

        written = write_report(int(target), folder)
    else:
        from lorebook.evaluate.plots import write_sweep_report

        results = paths.subdir("sweeps") / f"{target}.json"
        if not results.exists():
            raise InputError(f"no eval run or sweep named {target!r}", "pass a run id from `lorebook eval list` "
                             "or a sweep prefix from the data home's sweeps/ folder")
        written = write_sweep_report(results, folder)
    for kind, path in written.items():
        console.print(f"{kind:9} {path}", markup=False)


def register(app: typer.Typer) -> None:
    from lorebook.cli.synth import label_command, persona_eval_command

    eval_app.command("persona")(persona_eval_command)
    eval_app.command("label")(label_command)
    app.add_typer(eval_app, name="eval")
    app.command("report")(report_any)
