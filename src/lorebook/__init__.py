"""lorebook: talk with a local language model, teach it what you know, measure what it learned."""

__version__ = "0.1.0"
