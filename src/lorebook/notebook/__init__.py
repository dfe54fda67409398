"""Teach without training: a retrieval notebook with a per-notebook scope check."""
