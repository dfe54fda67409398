"""User-facing errors: one line that names the problem and the fix.

The CLI catches `LorebookError` and prints `error: <problem> (fix: <fix>)` with a non-zero exit and no
traceback. Library callers get a normal exception they can catch.
"""

from __future__ import annotations


class LorebookError(Exception):
    """A problem the user can fix; `fix` says how."""

    exit_code = 1

    def __init__(self, problem: str, fix: str = ""):
        self.problem = problem
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.problem} (fix: {self.fix})" if self.fix else self.problem


class ModelError(LorebookError):
    """Unknown, missing or corrupt model files."""


class AdapterError(LorebookError):
    """Missing adapter or adapter trained for another base model."""


class PersonaError(LorebookError):
    """Unreadable or invalid persona recipe."""


class InputError(LorebookError):
    """Malformed user input (files, options, data)."""
