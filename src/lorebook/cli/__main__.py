"""`python -m lorebook.cli` runs the CLI (same as the `lorebook` script)."""

from lorebook.cli.main import app

app()
