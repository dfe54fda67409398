"""Red-teaming: a shipped attack set graded per persona, and a linter for training data."""
