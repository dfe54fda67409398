"""Helpers shared by CLI modules: one-line errors, option parsing, console."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import typer
from rich.console import Console
from rich.markup import escape

from lorebook.errors import LorebookError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def fail(problem: str, fix: str = "", code: int = 1) -> typer.Exit:
    """Print `error: problem (fix: …)` to stderr and return an Exit to raise."""
    message = escape(LorebookError(problem, fix).one_line())  # "pip install 'lorebook[eval]'" is not markup
    err_console.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def friendly_errors(func: Callable) -> Callable:
    """Turn LorebookError (and a few common OS errors) into one-line messages and exit codes."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except LorebookError as exc:
            raise fail(exc.problem, exc.fix, exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None
        except MemoryError:
            raise fail("out of memory", "use a smaller model, shorter context or smaller batch") from None
        except BrokenPipeError:
            sys.stderr.close()
            raise typer.Exit(0) from None

    return wrapper
