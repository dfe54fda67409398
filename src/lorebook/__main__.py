"""`python -m lorebook` runs the CLI."""

from lorebook.cli.main import app

app()
