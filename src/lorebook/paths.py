"""Where lorebook keeps its data: `$LOREBOOK_HOME`, else the platform's user data dir.

Layout under the home:
  models/<name>/      de-quantized safetensors cache of GGUF models ($LOREBOOK_MODELS overrides)
  adapters/<name>/    trained LoRA adapters
  personas/*.yaml     user personas (shadow the shipped ones)
  lorebook.db         SQLite: conversation logs and other runs
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def home() -> Path:
    """The lorebook data directory, created on first use."""
    env = os.environ.get("LOREBOOK_HOME")
    root = Path(env).expanduser() if env else Path(platformdirs.user_data_dir("lorebook"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def subdir(name: str) -> Path:
    """A named directory under the data home (models, adapters, personas, runs…), created on first use."""
    path = home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """The converted-model cache: `$LOREBOOK_MODELS` if set (tests share one cache), else home/models."""
    env = os.environ.get("LOREBOOK_MODELS")
    root = Path(env).expanduser() if env else home() / "models"
    root.mkdir(parents=True, exist_ok=True)
    return root


def database() -> Path:
    """The SQLite database file."""
    return home() / "lorebook.db"
