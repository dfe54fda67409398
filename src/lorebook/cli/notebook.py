"""`lorebook notebook create|add|import|list|search|calibrate|rm`: teach without training."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from lorebook.cli.common import console, friendly_errors

notebook_app = typer.Typer(help="Retrieval notebooks: facts a model looks up instead of learning.",
                           no_args_is_help=True)
STORE_VARIABLE = "LOREBOOK_NOTEBOOK_URL"  # lorebook.notebook.store reads it; not imported here to keep --help fast
PRECISION_HELP = ("embedding precision, fixed for the notebook: float32 (best retrieval) or int8 "
                  "(~1.5x faster import and search; use it for tens of thousands of notes)")


@notebook_app.callback()
def choose_store(
    ctx: typer.Context,
    store: str = typer.Option(
        None, "--store", metavar="URL", envvar=STORE_VARIABLE, show_envvar=True,
        help="where notebooks live: a SQLAlchemy URL such as postgresql+psycopg2://user:pw@host/db (a notebook "
             f"shared by several machines; set {STORE_VARIABLE} to use it for chat, eval and serve too); "
             "default: the local SQLite database"),
) -> None:
    # The store is chosen through the variable, so every Notebook.open/create/all of this command (and the
    # scope calibration it runs) sees it; the previous value is restored when the command ends.
    if store is None:
        return
    before = os.environ.get(STORE_VARIABLE)
    os.environ[STORE_VARIABLE] = store

    def restore() -> None:
        if before is None:
            os.environ.pop(STORE_VARIABLE, None)
        else:
            os.environ[STORE_VARIABLE] = before

    ctx.call_on_close(restore)


def _open(name: str):
    from lorebook.notebook.store import Notebook

    return Notebook.open(name)


@notebook_app.command("create")
@friendly_errors
def create(name: str = typer.Argument(..., help="notebook name"),
           precision: str = typer.Option("float32", help=PRECISION_HELP)) -> None:
    """Create an empty notebook."""
    from lorebook.notebook.store import Notebook

    Notebook.create(name, precision=precision)
    console.print(f"notebook [bold]{name}[/] created; add facts with `lorebook notebook add {name} \"…\"`")


@notebook_app.command("add")
@friendly_errors
def add(name: str = typer.Argument(..., help="notebook name"),
        notes: list[str] = typer.Argument(..., help="one or more facts, each a sentence")) -> None:
    """Add notes (facts) to a notebook."""
    added, skipped = _open(name).add(notes, source="cli")
    console.print(f"added {added} note(s) to {name}" + (f"; {skipped} already there" if skipped else ""))


@notebook_app.command("import")
@friendly_errors
def import_(
    name: str = typer.Argument(..., help="notebook name (created if missing)"),
    source: Path = typer.Argument(..., help="knowledge pack (.jsonl) or text file (one note a line)"),
    calibrate_scope: bool = typer.Option(True, "--calibrate/--no-calibrate",
                                         help="set the scope threshold from the pack's questions"),
    precision: str = typer.Option(None, help=PRECISION_HELP + " (when the import creates the notebook)"),
) -> None:
    """Import a knowledge pack's facts (or a text file's lines); rerunning skips what is already there."""
    from lorebook.errors import InputError
    from lorebook.notebook.store import Notebook

    if not source.is_file():
        raise InputError(f"{source} does not exist", "give a knowledge pack (.jsonl) or a text file")
    try:
        notebook = Notebook.open(name)
    except InputError:
        notebook = Notebook.create(name, precision=precision or "float32")
    else:
        if precision and precision != notebook.precision:
            raise InputError(f"notebook {name!r} embeds in {notebook.precision}, not {precision}",
                             f"drop --precision, or import into a new notebook (`lorebook notebook rm {name} --all`)")
    facts = None
    if source.suffix == ".jsonl":
        from lorebook.teach.pack import load_pack

        facts = load_pack(source)
        texts, questions = [fact.fact for fact in facts], [fact.question for fact in facts]
        answers = [fact.answer for fact in facts]
    else:
        from lorebook.teach.pack import iter_lines

        texts, questions, answers = [line for _, line in iter_lines(source) if line.strip()], None, None
    added, skipped = notebook.add(texts, source=str(source), progress=True, questions=questions, answers=answers)
    console.print(f"{name}: {added} note(s) added, {skipped} already there; {notebook.count()} in all")
    if facts and calibrate_scope:
        _calibrate(notebook, facts)


def _calibrate(notebook, facts) -> None:
    from lorebook.evaluate.probes import load_general_knowledge
    from lorebook.notebook.scope import calibrate

    in_scope = [q for fact in facts for q in (fact.question, *fact.paraphrases)]
    out_of_scope = [item["question"] for item in load_general_knowledge()]
    report = calibrate(notebook, in_scope, out_of_scope)
    console.print(f"scope threshold {report['threshold']:.3f}: {report['in_scope_passed']:.0%} of "
                  f"{report['in_scope']} pack questions in scope, {report['out_of_scope_passed']:.1%} of "
                  f"{report['out_of_scope']} general questions")


@notebook_app.command("calibrate")
@friendly_errors
def calibrate_command(name: str = typer.Argument(..., help="notebook name"),
                      pack: Path = typer.Argument(..., help="knowledge pack whose questions are in scope")) -> None:
    """Set the scope threshold: the pack's questions and paraphrases in, the general probe set out."""
    from lorebook.teach.pack import load_pack

    _calibrate(_open(name), load_pack(pack))


@notebook_app.command("list")
@friendly_errors
def list_(name: str = typer.Argument(None, help="a notebook to list the notes of (default: all notebooks)"),
          limit: int = typer.Option(50, help="notes to show at most"),
          as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List notebooks, or the notes of one."""
    from lorebook.notebook.store import Notebook

    rows = _open(name).notes(limit) if name else Notebook.all()
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    elif name:
        for row in rows:
            console.print(f"{row['id']:>6}  {row['text']}", markup=False)
    else:
        for row in rows:
            threshold = f"{row['threshold']:.3f}" if row["threshold"] is not None else "default"
            console.print(f"{row['name']:24} {row['notes']:>7} notes   scope threshold {threshold}   "
                          f"{row['precision']}")


@notebook_app.command("search")
@friendly_errors
def search(name: str = typer.Argument(..., help="notebook name"),
           query: str = typer.Argument(..., help="a question"),
           k: int = typer.Option(3, "-k", help="notes to show")) -> None:
    """Show the best notes for a query, which one the prompt gets, and whether the query is in scope."""
    from lorebook.notebook.scope import Retriever

    retriever = Retriever(_open(name))
    hits = retriever.notebook.search([query], max(k, retriever.candidates()))[0]
    chosen = {hit.id for hit in retriever.select(hits, query)}
    hits = hits[:k]
    for hit in hits:
        mark = "chosen" if hit.id in chosen else "      "  # the note(s) the prompt gets
        console.print(f"{hit.score:.3f} {mark} [{hit.id}] {hit.text}", markup=False, soft_wrap=True)
    console.print(f"threshold {retriever.threshold:.3f}: " + ("in scope" if chosen else "out of scope, prompt untouched"))


@notebook_app.command("rm")
@friendly_errors
def remove(name: str = typer.Argument(..., help="notebook name"),
           note_id: int = typer.Argument(None, help="note id to remove (omit with --all to delete the notebook)"),
           everything: bool = typer.Option(False, "--all", help="delete the whole notebook")) -> None:
    """Remove a note, or a whole notebook with --all."""
    from lorebook.errors import InputError

    notebook = _open(name)
    if everything:
        notebook.delete()
        console.print(f"notebook {name} deleted")
    elif note_id is None:
        raise InputError("no note id given", f"`lorebook notebook rm {name} ID`, or --all for the whole notebook")
    else:
        notebook.remove(note_id)
        console.print(f"note {note_id} removed from {name}")


def register(app: typer.Typer) -> None:
    app.add_typer(notebook_app, name="notebook")
