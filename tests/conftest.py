"""Shared fixtures: an isolated LOREBOOK_HOME per test run, the shared model cache, a tiny llama."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
import pytest

# Converted bundled models are shared with `make` (converting takes a minute); everything else is isolated.
os.environ.setdefault("LOREBOOK_MODELS", str(Path(platformdirs.user_data_dir("lorebook")) / "models"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def lorebook_home(tmp_path, monkeypatch) -> Path:
    """Each test gets an empty data home, so logs, adapters and personas never leak between tests."""
    home = tmp_path / "lorebook-home"
    monkeypatch.setenv("LOREBOOK_HOME", str(home))
    monkeypatch.delenv("LOREBOOK_NOTEBOOK_URL", raising=False)  # a shared PostgreSQL notebook is never a test's
    return home


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer llama in HF format with SmolLM2's real tokenizer and chat template.

    Fast to load and run; it produces gibberish, so tests on it check mechanics, not answers.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lorebook.models.loader import load_tokenizer
    from lorebook.models.registry import resolve_model

    tokenizer = load_tokenizer(resolve_model("smollm2-135m"))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    directory = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
