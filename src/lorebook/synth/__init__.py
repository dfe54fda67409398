"""Synthetic role-play conversations (two agents, batched teachers, filters) and persona evaluation."""
