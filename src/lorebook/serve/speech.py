"""Synthesized speech kept for the page and for game engines: audio plus its Rhubarb mouth-cue track.

Every reply the server speaks gets an id; `GET /api/speech/{id}.wav` and `GET /api/speech/{id}/cues`
serve it back. Files live only under the data dir (`serve/speech/`), named by a random hex id that is
checked before any path is built, and only the newest `keep` are kept so the folder cannot grow forever.
Encoding for `/v1/audio/speech` (mp3, opus, aac, flac, wav, pcm) goes through PyAV, already used for
decoding.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import wave
from pathlib import Path

import numpy as np

from lorebook import paths
from lorebook.errors import InputError
from lorebook.voice.lipsync import MouthCue, cues_for_speech, rhubarb_json
from lorebook.voice.tts import SpeechChunk

_ID = re.compile(r"^[0-9a-f]{24}$")
FORMATS = {"wav": "audio/wav", "pcm": "audio/pcm", "mp3": "audio/mpeg", "flac": "audio/flac",
           "opus": "audio/ogg", "aac": "audio/aac"}


class SpeechStore:
    """Speech files by id under the data dir."""

    def __init__(self, folder: Path | None = None, keep: int = 200):
        self.folder = folder or paths.subdir("serve") / "speech"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.keep = keep

    def save(self, samples: np.ndarray, sample_rate: int, cues: list[MouthCue], text: str) -> str:
        """Store one utterance; returns its id."""
        speech_id = secrets.token_hex(12)
        (self.folder / f"{speech_id}.wav").write_bytes(wav_bytes(samples, sample_rate))
        duration = samples.size / sample_rate
        track = rhubarb_json(cues, duration, f"{speech_id}.wav")
        track["metadata"]["text"] = text
        (self.folder / f"{speech_id}.json").write_text(json.dumps(track, ensure_ascii=False), encoding="utf-8")
        self._prune()
        return speech_id

    def save_chunks(self, chunks: list[SpeechChunk], text: str = "") -> tuple[str, dict]:
        """Store chunks spoken back to back; returns (id, Rhubarb JSON)."""
        samples = np.concatenate([c.samples for c in chunks]) if chunks else np.zeros(0, np.int16)
        rate = chunks[0].sample_rate if chunks else 22050
        speech_id = self.save(samples, rate, cues_for_speech(chunks), text or " ".join(c.text for c in chunks))
        return speech_id, self.cues(speech_id)

    def path(self, speech_id: str, suffix: str) -> Path:
        if not _ID.match(speech_id):
            raise InputError(f"{speech_id!r} is not a speech id", "use the id returned with the speech")
        found = self.folder / f"{speech_id}{suffix}"
        if not found.exists():
            raise FileNotFoundError(speech_id)
        return found

    def cues(self, speech_id: str) -> dict:
        return json.loads(self.path(speech_id, ".json").read_text(encoding="utf-8"))

    def _prune(self) -> None:
        files = sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for old in files[: max(0, len(files) - self.keep)]:
            old.unlink(missing_ok=True)
            old.with_suffix(".wav").unlink(missing_ok=True)


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(samples.astype("<i2", copy=False).tobytes())
    return buffer.getvalue()


def encode(samples: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Mono int16 audio as `fmt` (one of FORMATS)."""
    if fmt == "wav":
        return wav_bytes(samples, sample_rate)
    if fmt == "pcm":
        return samples.astype("<i2", copy=False).tobytes()
    if fmt not in FORMATS:
        raise InputError(f"response_format {fmt!r} is not supported", f"use one of: {', '.join(FORMATS)}")
    import av

    codec, container_format, rate = {"mp3": ("libmp3lame", "mp3", sample_rate), "flac": ("flac", "flac", sample_rate),
                                     "opus": ("libopus", "ogg", 48000), "aac": ("aac", "adts", sample_rate)}[fmt]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        resampler = av.AudioResampler(format=stream.codec_context.codec.audio_formats[0].name, layout="mono", rate=rate)
        frame = av.AudioFrame.from_ndarray(samples.astype(np.int16).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = sample_rate
        for resampled in resampler.resample(frame) + resampler.resample(None):
            resampled.pts = None
            for packet in stream.encode(resampled):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()
