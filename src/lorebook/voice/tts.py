"""Text-to-speech: Piper (neural, bundled English voice) and espeak-ng (Spanish and ~130 other languages).

Both produce `SpeechChunk`s: 16-bit mono PCM for one sentence, plus per-phoneme timings when the engine
gives them. Piper's alignment output (the voice is patched in memory at load, needs the `onnx` package)
says how many samples each phoneme lasts, which is what a talking face needs for mouth shapes.
espeak-ng runs as a subprocess (text on stdin, WAV on stdout); it reports no timings here.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from lorebook.errors import InputError, ModelError
from lorebook.voice.models import PIPER_VOICES, piper_voice_files
from lorebook.voice.text import has_words, speakable


@dataclass
class PhonemeTiming:
    phoneme: str
    start: float  # seconds from the start of the chunk
    end: float


@dataclass
class SpeechChunk:
    """One synthesized sentence: int16 mono samples at `sample_rate`, the text, optional phoneme timings."""

    samples: np.ndarray
    sample_rate: int
    text: str
    phonemes: list[PhonemeTiming] = field(default_factory=list)
    seconds: float = 0.0  # wall time spent synthesizing

    @property
    def duration(self) -> float:
        return self.samples.size / self.sample_rate

    @property
    def pcm(self) -> bytes:
        """Raw little-endian 16-bit PCM, for streaming to a player or a socket."""
        return self.samples.astype("<i2", copy=False).tobytes()


class Speaker:
    """A loaded voice. `speak(text)` yields one chunk per sentence."""

    name: str = ""
    language: str = ""
    sample_rate: int = 22050

    def speak(self, text: str) -> Iterator[SpeechChunk]:
        """Clean the text, then synthesize and yield it sentence by sentence (first audio comes early)."""
        from lorebook.voice.text import SentenceSplitter

        splitter = SentenceSplitter(first_min_chars=10_000)
        for sentence in splitter.push(_clean(text) + " ") + splitter.flush():
            started = time.perf_counter()
            chunk = self._synthesize(sentence)
            chunk.seconds = time.perf_counter() - started
            yield chunk

    def _synthesize(self, sentence: str) -> SpeechChunk:
        raise NotImplementedError

    def say(self, text: str) -> tuple[np.ndarray, list[SpeechChunk]]:
        """All of `text` as one int16 array (sentences joined), plus the chunks."""
        chunks = list(self.speak(text))
        if not chunks:
            return np.zeros(0, dtype=np.int16), []
        return np.concatenate([c.samples for c in chunks]), chunks


def _clean(text: str) -> str:
    cleaned = speakable(text)
    if not has_words(cleaned):
        raise InputError("nothing to say: the text has no words once markup and emoji are removed",
                         "give text with words in it")
    return cleaned


_piper_lock = threading.Lock()


class PiperSpeaker(Speaker):
    """A Piper ONNX voice, loaded once per process (voices are shared between sessions)."""

    def __init__(self, voice: str = "en_US-joe-medium", alignments: bool = True):
        self.voice = _load_piper(voice, alignments)
        self.name = voice
        self.language = self.voice.config.espeak_voice.split("-")[0]
        self.sample_rate = self.voice.config.sample_rate
        self.alignments = alignments

    def _synthesize(self, sentence: str) -> SpeechChunk:
        with _piper_lock:  # one ONNX session; concurrent runs would only fight over the 2 cores
            parts = list(self.voice.synthesize(sentence, include_alignments=self.alignments))
        samples = [p.audio_int16_array for p in parts]
        timings: list[PhonemeTiming] = []
        offset = 0.0
        for part in parts:  # Piper may split a "sentence" further; shift each part's timings
            timings += [PhonemeTiming(t.phoneme, t.start + offset, t.end + offset)
                        for t in _timings(part.phoneme_alignments, part.sample_rate)]
            offset += part.audio_int16_array.size / part.sample_rate
        audio = np.concatenate(samples) if samples else np.zeros(0, dtype=np.int16)
        return SpeechChunk(audio, self.sample_rate, sentence, timings)


def _timings(alignments, sample_rate: int) -> list[PhonemeTiming]:
    timings, position = [], 0
    for item in alignments or []:
        start = position / sample_rate
        position += int(item.num_samples)
        timings.append(PhonemeTiming(item.phoneme, start, position / sample_rate))
    return timings


@lru_cache(maxsize=4)
def _load_piper(voice: str, alignments: bool):
    import logging

    from piper import PiperVoice

    model, config = piper_voice_files(voice)
    logging.getLogger("piper").setLevel(logging.ERROR)
    try:
        return PiperVoice.load(model, config_path=config, include_alignments=alignments)
    except Exception as exc:  # noqa: BLE001 (onnxruntime raises its own types for truncated or foreign files)
        raise ModelError(f"Piper voice {voice} could not be loaded ({type(exc).__name__})",
                         "reinstall the voice package") from None


class EspeakSpeaker(Speaker):
    """espeak-ng through its command line; `language` is an espeak-ng voice such as es, fr, de, pt-br."""

    def __init__(self, language: str = "es", rate_wpm: int = 175, word_gap: int = 3):
        if shutil.which("espeak-ng") is None:
            raise ModelError("espeak-ng is not installed", "apt-get install espeak-ng (or run `make`)")
        if not espeak_has_voice(language):
            raise InputError(f"espeak-ng has no voice for {language!r}", "see `espeak-ng --voices` for codes")
        self.name = f"espeak:{language}"
        self.language = language.split("-")[0]
        self.rate_wpm = rate_wpm
        # A 30 ms pause between words: measured on Whisper base, Spanish WER 44 % -> 26 % (espeak runs words together).
        self.word_gap = word_gap

    def _synthesize(self, sentence: str) -> SpeechChunk:
        done = subprocess.run(["espeak-ng", "-v", self.name.split(":", 1)[1], "-s", str(self.rate_wpm),
                               "-g", str(self.word_gap), "--stdout"],
                              input=sentence.encode("utf-8"), capture_output=True, timeout=120, check=False)
        if done.returncode != 0 or done.stdout[:4] != b"RIFF":
            raise ModelError(f"espeak-ng failed: {done.stderr.decode(errors='replace').strip()[:200]}",
                             "check `espeak-ng --voices` and the text")
        # espeak writes a streaming WAV header (sizes unknown): take the rate, then the PCM after it.
        self.sample_rate = int.from_bytes(done.stdout[24:28], "little")
        samples = np.frombuffer(done.stdout[44:], dtype="<i2").astype(np.int16)
        return SpeechChunk(samples, self.sample_rate, sentence)


@lru_cache(maxsize=64)
def espeak_has_voice(language: str) -> bool:
    """Whether espeak-ng accepts `language` as a voice (codes like es, en, pt-br; see `espeak-ng --voices`)."""
    if not language or not all(ch.isalnum() or ch in "-_+" for ch in language):
        return False
    done = subprocess.run(["espeak-ng", "-v", language, "-q", "x"], check=False, capture_output=True, timeout=30)
    return done.returncode == 0


def load_speaker(voice: str | None = None, language: str = "en", alignments: bool = True) -> Speaker:
    """The voice for a persona: a Piper voice name/.onnx file, `espeak:LANG`, a bare language code, or
    (voice None) Piper for English and espeak-ng for any other language."""
    if voice and voice.startswith("espeak:"):
        return EspeakSpeaker(voice.split(":", 1)[1])
    if voice and (voice in PIPER_VOICES or voice.endswith(".onnx")):
        return PiperSpeaker(voice, alignments)
    if voice and voice != "en":
        return EspeakSpeaker(voice)
    if (voice or language) == "en":
        return PiperSpeaker(PIPER_VOICES[0], alignments)
    return EspeakSpeaker(language)
