"""Registry and loader: names, paths, and one-line errors for bad model files."""

from __future__ import annotations

import pytest

from lorebook.errors import ModelError
from lorebook.models.loader import validate_gguf
from lorebook.models.registry import DEFAULT_MODEL, gguf_path, list_models, resolve_model


def test_default_and_aliases_resolve_to_bundled_models():
    assert resolve_model(None).name == DEFAULT_MODEL
    assert resolve_model("smollm2").name == "smollm2-135m"
    assert resolve_model("gemma3").name == "gemma3-270m"
    assert {m.name for m in list_models()} == {"smollm2-135m", "gemma3-270m"}


def test_unknown_model_names_the_choices():
    with pytest.raises(ModelError) as err:
        resolve_model("gpt-17")
    assert "unknown model 'gpt-17'" in str(err.value) and "smollm2-135m" in str(err.value)


def test_hf_directory_needs_config(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_non_gguf_file_is_refused(tmp_path):
    bogus = tmp_path / "model.bin"
    bogus.write_bytes(b"hello")
    with pytest.raises(ModelError, match="not a .gguf file"):
        resolve_model(str(bogus))


def test_bad_magic_is_refused(tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"NOTGGUF" + bytes(100))
    with pytest.raises(ModelError, match="not a GGUF file"):
        validate_gguf(fake)


def test_truncated_gguf_is_named_corrupt(tmp_path):
    real = gguf_path(resolve_model("smollm2-135m"))
    cut = tmp_path / "cut.gguf"
    with real.open("rb") as src:
        cut.write_bytes(src.read(real.stat().st_size // 2))
    with pytest.raises(ModelError, match="corrupt or truncated"):
        validate_gguf(cut)
    validate_gguf(real)  # the intact file passes
