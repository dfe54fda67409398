"""`lorebook redteam` (attack a persona; list|show runs) and `lorebook lint` (check training data)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer
from rich.table import Table

from lorebook.cli.common import console, friendly_errors
from lorebook.redteam.runner import RedteamConfig

HELP = {f.name: f.metadata["help"] for f in dataclasses.fields(RedteamConfig)}

redteam_app = typer.Typer(help="Attack a persona with the shipped jailbreak and injection set; hold rates per technique.")


def _rate(metric: dict | None) -> str:
    if not metric or metric.get("value") is None:
        return "-"
    low, high = metric["ci"]
    return f"{100 * metric['value']:.0f}% [{100 * low:.0f}–{100 * high:.0f}] n={metric['n']}"


def hold_table(run: dict) -> Table:
    """Hold rate per technique and per expected behaviour, with 95% Wilson intervals."""
    metrics = run["metrics"] or {}
    title = (f"red-team run {run['id']}: persona {run['persona']} on {Path(run['model']).name}"
             + (f" + {', '.join(run['adapters'])}" if run["adapters"] else "")
             + (f", notebook {run['notebook']}" if run["notebook"] else ""))
    table = Table("", "held", "hold rate [95% CI]", title=title)
    for technique, metric in metrics.get("techniques", {}).items():
        table.add_row(technique, f"{metric['k']}/{metric['n']}", _rate(metric))
    table.add_section()
    for behaviour, metric in metrics.get("behaviours", {}).items():
        table.add_row(f"kept {behaviour}", f"{metric['k']}/{metric['n']}", _rate(metric))
    table.add_section()
    hold = metrics.get("hold", {})
    table.add_row("all attacks", f"{hold.get('k')}/{hold.get('n')}", _rate(hold))
    if metrics.get("degenerate", {}).get("k"):
        table.add_row("empty or looping replies", f"{metrics['degenerate']['k']}/{metrics['degenerate']['n']}",
                      "counted as held: nothing was said")
    if "judge_hold" in metrics:
        agree = metrics["judge_agreement"]
        table.add_row("LLM judge", f"{metrics['judge_hold']['k']}/{metrics['judge_hold']['n']}",
                      f"{_rate(metrics['judge_hold'])}; agrees {100 * (agree['value'] or 0):.0f}%")
    return table


def print_failures(items: list[dict], limit: int) -> None:
    failed = [i for i in items if not i["held"]][:limit]
    for item in failed:
        broken = [e for e in item["expect"] if not item["grades"][e]["held"]]
        reply = next((m["content"] for m in reversed(item["conversation"]) if m["role"] == "assistant"), "")
        console.print(f"✗ {item['attack_id']} ({item['technique']}; broke {', '.join(broken)}): "
                      f"{' '.join(reply.split())[:140]!r}", markup=False)


@redteam_app.callback(invoke_without_command=True)
@friendly_errors
def redteam(
    ctx: typer.Context,
    persona: str = typer.Option("assistant", "--persona", "-p", help=HELP["persona"]),
    model: str = typer.Option(None, "--model", "-m", help=HELP["model"]),
    adapter: list[str] = typer.Option([], "--adapter", "-a", help=HELP["adapters"]),
    notebook: str = typer.Option(None, "--notebook", "-n", help=HELP["notebook"]),
    techniques: str = typer.Option("", "--techniques", "-t", help=HELP["techniques"]),
    per_technique: int = typer.Option(0, "--per-technique", help=HELP["per_technique"]),
    attacks_file: Path = typer.Option(None, "--attacks", help=HELP["attacks_file"]),
    max_tokens: int = typer.Option(80, "--max-tokens", help=HELP["max_tokens"]),
    batch_size: int = typer.Option(8, "--batch-size", help=HELP["batch_size"]),
    judge: str = typer.Option(None, "--judge", help=HELP["judge"]),
    failures: int = typer.Option(5, "--failures", help="show this many failed attacks with the reply"),
    as_json: bool = typer.Option(False, "--json", help="print the run (config, metrics, items) as JSON"),
) -> None:
    """Attack a persona (`lorebook redteam --persona NAME`); `list` and `show RUN` report stored runs."""
    if ctx.invoked_subcommand is not None:
        return
    from lorebook.redteam import store
    from lorebook.redteam.runner import run_redteam

    config = RedteamConfig(persona=persona, model=model, adapters=list(adapter), notebook=notebook,
                           techniques=[t.strip() for t in techniques.split(",") if t.strip()],
                           per_technique=per_technique, attacks_file=str(attacks_file) if attacks_file else None,
                           max_tokens=max_tokens, batch_size=batch_size, judge=judge)
    run_id = run_redteam(config, progress=not as_json)
    _report(store, run_id, as_json, failures)
    if not as_json:
        console.print(f"stored as red-team run {run_id}; every reply: lorebook redteam show {run_id} --failures 100",
                      markup=False)


def _report(store, run_id: int, as_json: bool, failures: int) -> None:
    db = store.connect()
    try:
        run, items = store.get_run(db, run_id), store.get_items(db, run_id)
    finally:
        db.close()
    if as_json:
        print(json.dumps({"run": run, "items": items}, ensure_ascii=False))
        return
    console.print(hold_table(run))
    print_failures(items, failures)


@redteam_app.command("show")
@friendly_errors
def show(run_id: int = typer.Argument(..., help="run id from `lorebook redteam list`"),
         failures: int = typer.Option(10, "--failures", help="show this many failed attacks with the reply"),
         as_json: bool = typer.Option(False, "--json", help="run, metrics and every conversation as JSON")) -> None:
    """Hold rates of one run and its failed attacks."""
    from lorebook.redteam import store

    _report(store, run_id, as_json, failures)


@redteam_app.command("list")
@friendly_errors
def list_runs(limit: int = typer.Option(30, "--limit", help="newest N runs"),
              as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Stored red-team runs side by side: overall and per-technique hold rates."""
    from lorebook.redteam import store
    from lorebook.redteam.attacks import TECHNIQUES

    db = store.connect()
    runs = store.list_runs(db, limit)
    db.close()
    if as_json:
        print(json.dumps(runs, ensure_ascii=False))
        return
    table = Table("run", "persona", "subject", "all", *(t[:5] for t in TECHNIQUES))
    for run in runs:
        metrics = run["metrics"] or {}
        cells = [_percent(metrics.get("techniques", {}).get(t)) for t in TECHNIQUES]
        subject = " + ".join([Path(run["model"]).name, *run["adapters"]]
                             + ([f"notebook {run['notebook']}"] if run["notebook"] else []))
        table.add_row(str(run["id"]), run["persona"] or "-", subject,
                      _percent(metrics.get("hold")) if run["status"] == "done" else run["status"], *cells)
    console.print(table)


def _percent(metric: dict | None) -> str:
    return "-" if not metric or metric.get("value") is None else f"{100 * metric['value']:.0f}%"


@friendly_errors
def lint(
    paths: list[Path] = typer.Argument(..., help="knowledge pack, chat JSONL or text files (what `teach` takes)"),
    fail_on: str = typer.Option("high", "--fail-on", help="exit with status 1 on findings this severe or worse (high, medium, low)"),
    drop: str = typer.Option(None, "--drop", help="write a copy without records at this severity or worse"),
    output: Path = typer.Option(None, "--output", "-o", help="where --drop writes the cleaned file (one input only)"),
    as_json: bool = typer.Option(False, "--json", help="findings as JSON"),
) -> None:
    """Check training data for instructions, triggers, URLs, encoded blobs, duplicates and outliers."""
    from lorebook.errors import InputError
    from lorebook.redteam.lint import at_or_above, lint_file, write_without

    if drop and (output is None or len(paths) != 1):
        raise InputError("--drop needs --output and exactly one input file", "e.g. lorebook lint pack.jsonl --drop high -o clean.jsonl")
    report, failing = [], 0
    for path in paths:
        kind, records, findings = lint_file(path)
        failing += len(at_or_above(findings, fail_on))
        report.append({"path": str(path), "kind": kind, "records": len(records),
                       "findings": [f.to_dict() for f in findings]})
        if drop:
            dropped = write_without(path, at_or_above(findings, drop), output)
            if not as_json:
                console.print(f"wrote {output}: {len(records) - dropped} of {len(records)} records "
                              f"({dropped} with {drop}-or-worse findings dropped)", markup=False)
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        for entry in report:
            _print_findings(entry)
    if failing and not drop:
        raise typer.Exit(1)


def _print_findings(entry: dict) -> None:
    findings = entry["findings"]
    counts = {s: sum(f["severity"] == s for f in findings) for s in ("high", "medium", "low")}
    console.print(f"{entry['path']}: {entry['records']} records ({entry['kind']}); "
                  + ", ".join(f"{n} {s}" for s, n in counts.items()), markup=False)
    if findings:
        table = Table("severity", "line", "id", "check", "finding")
        for f in findings:
            table.add_row(f["severity"], str(f["line"]), f["id"], f["check"], f["message"])
        console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(redteam_app, name="redteam")
    app.command("lint", help=lint.__doc__)(lint)
