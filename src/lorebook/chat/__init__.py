"""Conversations with a model: personas (YAML recipes), context fitting, and the SQLite log."""
