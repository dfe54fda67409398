"""Bundled speech models: Whisper base reassembled from two packages, verified, cached once."""

from __future__ import annotations

import pytest

from lorebook.errors import ModelError
from lorebook.voice import models


def test_whisper_base_is_assembled_once_and_verified(tmp_path, monkeypatch):
    monkeypatch.setenv("LOREBOOK_MODELS", str(tmp_path / "models"))
    directory = models.whisper_model_dir("base")
    assert (directory / "model.bin").stat().st_size == models.WHISPER_BASE_SIZE
    assert {p.name for p in directory.iterdir()} >= {"config.json", "tokenizer.json", "vocabulary.txt"}
    stamp = (directory / "model.bin").stat().st_mtime_ns
    assert models.whisper_model_dir("base") == directory
    assert (directory / "model.bin").stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_corrupt_parts_are_refused_and_leave_no_model(tmp_path, monkeypatch):
    monkeypatch.setenv("LOREBOOK_MODELS", str(tmp_path / "models"))
    first, second = models._part_dirs()
    fake = [tmp_path / "p1", tmp_path / "p2"]
    for source, target in zip((first, second), fake):
        target.mkdir()
        for path in source.iterdir():
            (target / path.name).symlink_to(path)
    (fake[1] / "model.bin.part2").unlink()
    (fake[1] / "model.bin.part2").write_bytes(b"\0" * 1000)  # damaged second half
    monkeypatch.setattr(models, "_part_dirs", lambda: fake)
    with pytest.raises(ModelError, match="checksum"):
        models.whisper_model_dir("base")
    target = tmp_path / "models" / "whisper-base"
    assert not (target / "model.bin").exists() and not (target / "model.bin.partial").exists()


def test_interrupted_assembly_is_redone(tmp_path, monkeypatch):
    monkeypatch.setenv("LOREBOOK_MODELS", str(tmp_path / "models"))
    target = tmp_path / "models" / "whisper-base"
    target.mkdir(parents=True)
    (target / "model.bin").write_bytes(b"half")  # no checksum stamp: a crash mid-way
    assert models.whisper_model_dir("base").joinpath("model.bin").stat().st_size == models.WHISPER_BASE_SIZE


def test_unknown_models_and_voices():
    with pytest.raises(ModelError, match="unknown speech-to-text model"):
        models.whisper_model_dir("large-v3")
    with pytest.raises(ModelError, match="unknown Piper voice"):
        models.piper_voice_files("en_GB-alan")
    assert models.whisper_model_dir("tiny.en").joinpath("model.bin").exists()
