"""`lorebook ask` (one shot, streamed) and `lorebook chat` (multi-turn REPL)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer

from lorebook.chat.session import ChatSession, get_engine, resolve_setup
from lorebook.cli.common import console, err_console, friendly_errors
from lorebook.models.engine import ENGINES, GenerationOptions

MODEL = typer.Option(None, "--model", "-m", help="registry name, .gguf file or HF directory (default: the persona's)")
ADAPTER = typer.Option(None, "--adapter", "-a", help="LoRA adapter name or directory; repeat to stack")
PERSONA = typer.Option(None, "--persona", "-p", help="persona name or YAML file (default: assistant)")
ENGINE = typer.Option("torch", "--engine", "-e", help=f"generation engine: {', '.join(ENGINES)}")
OPTION = typer.Option(None, "--option", "-o", help="sampling option key=value; " + "; ".join(GenerationOptions.help_lines()))
SYSTEM = typer.Option(None, "--system", "-s", help="replace the persona's system prompt")
NO_LOG = typer.Option(False, "--no-log", help="do not record the conversation in the log")
NOTEBOOK = typer.Option(None, "--notebook", "-n", help="retrieval notebook to consult (default: the persona's)")

CHAT_HELP = """commands: /system TEXT  set the system prompt | /reset  forget the conversation |
/save FILE  write the transcript (.json or .md) | /bye  quit"""


def _open(persona, model, adapter, engine, option, system, no_log, notebook=None) -> ChatSession:
    chosen, model_name, adapters, options = resolve_setup(persona, model, adapter, option, system)
    with err_console.status(f"loading {model_name or 'the default model'}…"):
        loaded = get_engine(model_name, adapters, engine)
    return ChatSession(loaded, chosen, options, log=not no_log, persona_name=chosen.name, adapters=adapters,
                       notebook=notebook)


def _stream_reply(session: ChatSession, text: str, stats: bool) -> None:
    started = time.perf_counter()
    for piece in session.reply(text):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if session.dropped_turns:
        err_console.print(f"[yellow]note:[/] dropped the {session.dropped_turns} oldest messages to fit the context")
    if stats:
        last, seconds = session.engine.last, time.perf_counter() - started
        err_console.print(
            f"[dim]{last.completion_tokens} tokens in {seconds:.2f} s "
            f"({last.completion_tokens / max(seconds, 1e-9):.1f} tok/s), prompt {last.prompt_tokens} tokens[/]"
        )


def ask(
    question: str = typer.Argument(None, help="the question; '-' or nothing reads standard input"),
    model: str = MODEL,
    adapter: list[str] = ADAPTER,
    persona: str = PERSONA,
    engine: str = ENGINE,
    option: list[str] = OPTION,
    system: str = SYSTEM,
    no_log: bool = NO_LOG,
    notebook: str = NOTEBOOK,
    stats: bool = typer.Option(False, "--stats", help="print token counts and speed to stderr"),
) -> None:
    """Ask one question and stream the answer."""
    if question in (None, "-"):
        if sys.stdin.isatty():
            raise typer.BadParameter("give a question, e.g. lorebook ask \"What is the capital of France?\"")
        question = sys.stdin.read()
    if not question.strip():
        raise typer.BadParameter("the question is empty")
    session = _open(persona, model, adapter, engine, option, system, no_log, notebook)
    _stream_reply(session, question.strip(), stats)


def chat(
    model: str = MODEL,
    adapter: list[str] = ADAPTER,
    persona: str = PERSONA,
    engine: str = ENGINE,
    option: list[str] = OPTION,
    system: str = SYSTEM,
    no_log: bool = NO_LOG,
    notebook: str = NOTEBOOK,
    stats: bool = typer.Option(False, "--stats", help="print token counts and speed after each reply"),
) -> None:
    """Talk with a model, turn by turn. /bye to quit."""
    session = _open(persona, model, adapter, engine, option, system, no_log, notebook)
    err_console.print(f"chatting with [bold]{session.persona.name}[/] on {session.engine.model_name} "
                      f"({session.engine.name} engine). {CHAT_HELP}")
    while True:
        try:
            line = input(">>> ")
        except EOFError:
            break
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            if not _command(session, text):
                break
            continue
        _stream_reply(session, text, stats)


def _command(session: ChatSession, text: str) -> bool:
    """Run a slash command; False means quit."""
    verb, _, rest = text.partition(" ")
    rest = rest.strip()
    if verb in ("/bye", "/exit", "/quit"):
        return False
    if verb == "/reset":
        session.reset()
        err_console.print("conversation reset")
    elif verb == "/system":
        if rest:
            session.set_system(rest)
            err_console.print("system prompt set")
        else:
            console.print(session.conversation.system or "(no system prompt)")
    elif verb == "/save":
        path = Path(rest or "conversation.json")
        _save(session, path)
        err_console.print(f"saved {len(session.conversation.turns)} messages to {path}")
    else:
        err_console.print(f"unknown command {verb}. {CHAT_HELP}")
    return True


def _save(session: ChatSession, path: Path) -> None:
    messages = session.conversation.messages()
    if path.suffix == ".md":
        body = "\n\n".join(f"**{m['role']}**: {m['content']}" for m in messages)
    else:
        body = json.dumps({"model": session.engine.model_name, "persona": session.persona.name,
                           "messages": messages}, indent=2, ensure_ascii=False)
    path.write_text(body + "\n", encoding="utf-8")


def register(app: typer.Typer) -> None:
    app.command()(friendly_errors(ask))
    app.command()(friendly_errors(chat))
