"""Speech-to-text with faster-whisper (CTranslate2, int8 on CPU).

English uses Whisper tiny.en (fast); any other language, or auto-detection, uses multilingual base.
`Transcriber.transcribe(audio)` handles an utterance in memory; `transcribe_file` walks a recording of
any length in windows cut at quiet points, so memory stays bounded and a progress bar can follow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lorebook.voice.audio import SAMPLE_RATE, audio_duration, iter_audio_blocks
from lorebook.voice.models import whisper_model_dir


@dataclass
class SttConfig:
    """Speech-to-text settings; each help text is also the CLI flag's help."""

    model: str | None = field(default=None, metadata={
        "help": "Whisper model: tiny.en, base or a CTranslate2 directory (default: tiny.en for English, else base)"})
    language: str | None = field(default=None, metadata={
        "help": "spoken language code (en, es, …); 'auto' or empty detects it (needs the multilingual model)"})
    beam_size: int | None = field(default=None, metadata={
        "help": "beam search width (default: 1 = greedy for tiny.en, 5 for base, which needs it on synthetic speech)"})
    threads: int = field(default=2, metadata={"help": "CPU threads for CTranslate2"})
    window_seconds: float = field(default=60.0, metadata={
        "help": "long files are transcribed in windows of about this length (bounded memory)"})
    vad_threshold: float = field(default=0.35, metadata={
        "help": "speech probability above which long files keep audio (Silero VAD); faster-whisper's 0.5 cut the "
                "first words of 9 in 48 phone-quality (8 kHz) utterances, 0.35 none"})
    short_window: bool = field(default=True, metadata={
        "help": "encode a short utterance with 0.5 s of silence before and 3 s after instead of Whisper's 30-s "
                "window (about 4x faster); a transcript that loops or runs too long is redone with the full window"})

    def model_name(self) -> str:
        """The model to load: explicit, else tiny.en for English, else multilingual base."""
        if self.model:
            return self.model
        return "tiny.en" if self.language in (None, "en") else "base"

    def forced_language(self) -> str | None:
        """The language passed to Whisper, or None to auto-detect."""
        if self.language in (None, "", "auto"):
            return "en" if self.model_name().endswith(".en") else None
        return self.language


@dataclass
class Segment:
    start: float
    end: float
    text: str


@dataclass
class Transcript:
    """What was said: text, the (detected or forced) language, timed segments, and the cost."""

    text: str
    language: str
    duration: float
    segments: list[Segment] = field(default_factory=list)
    seconds: float = 0.0  # wall time spent transcribing

    @property
    def real_time_factor(self) -> float:
        return self.seconds / self.duration if self.duration else 0.0


_models: dict[tuple[str, int], object] = {}
SHORT_WINDOW_MAX_SECONDS = 20.0  # longer utterances gain little and drift more: they get the full window


class Transcriber:
    """A loaded Whisper model plus the settings to use it; models are cached per process."""

    def __init__(self, config: SttConfig | None = None):
        from faster_whisper import WhisperModel

        self.config = config or SttConfig()
        name = self.config.model_name()
        key = (name, self.config.threads)
        if key not in _models:
            _models[key] = WhisperModel(str(whisper_model_dir(name)), device="cpu", compute_type="int8",
                                        cpu_threads=self.config.threads)
        self.model = _models[key]
        self.multilingual = bool(self.model.model.is_multilingual)

    def _segments(self, audio: np.ndarray, offset: float, vad_filter: bool) -> tuple[list[Segment], str]:
        language = self.config.forced_language()
        if language and language != "en" and not self.multilingual:
            from lorebook.errors import InputError

            raise InputError(f"model {self.config.model_name()} only understands English, not {language!r}",
                             "use --model base for other languages")
        beam = self.config.beam_size or (5 if self.multilingual else 1)
        pieces, info = self.model.transcribe(audio, language=language, beam_size=beam, vad_filter=vad_filter,
                                             vad_parameters={"threshold": self.config.vad_threshold} if vad_filter
                                             else None, condition_on_previous_text=False, without_timestamps=True)
        segments = [Segment(offset + s.start, offset + s.end, s.text.strip()) for s in pieces]
        return [s for s in segments if s.text], info.language

    def transcribe(self, audio: np.ndarray, vad_filter: bool = False) -> Transcript:
        """Transcribe 16 kHz mono float32 audio (an utterance) held in memory."""
        started = time.perf_counter()
        duration = audio.size / SAMPLE_RATE
        if audio.size == 0 or float(np.abs(audio).max(initial=0.0)) < 1e-4:
            # Whisper hallucinates text ("Thank you.") on digital silence; there is nothing to hear.
            return Transcript("", self.config.forced_language() or "", duration, [], time.perf_counter() - started)
        audio = audio.astype(np.float32, copy=False)
        language = self.config.forced_language()
        text = None
        if self.config.short_window and language and not vad_filter and duration <= SHORT_WINDOW_MAX_SECONDS:
            text = self._short_window(audio, language)
        if text is not None:
            segments = [Segment(0.0, duration, text)] if text else []
        else:
            segments, language = self._segments(audio, 0.0, vad_filter)
            text = " ".join(s.text for s in segments).strip()
        return Transcript(text, language, duration, segments, time.perf_counter() - started)

    def _short_window(self, audio: np.ndarray, language: str) -> str | None:
        """Greedy/beam decode over an encoder input cut to the utterance padded with silence, or None.

        Whisper always encodes 30 s, which is most of the cost of a 3-s question (0.46 of 0.65 s with
        tiny.en on 2 cores). A shorter input encodes in a fraction of that and usually decodes the same
        text, but the model, trained on 30-s windows, sometimes repeats itself at the end; such a
        transcript (a repeated word 3-gram, more than 6 words a second, or a decode that hit its length
        cap) is thrown away and the caller decodes the full window instead. The padding is 0.5 s before and
        3 s after: with speech from sample 0 and 1 s of tail (the first version), tiny.en misheard the first
        word or repeated the sentence on half of 192 Piper utterances, so most fell back; with 0.5 s and 3 s
        none did, at the full window's word error rate (docs/benchmarks.md).
        """
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer

        if language != "en" and not self.multilingual:
            return None
        padded = np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), audio, np.zeros(3 * SAMPLE_RATE, np.float32)])
        features = self.model.feature_extractor(padded)
        features = features[:, : features.shape[1] // 2 * 2]  # the encoder's conv stride halves the frames
        tokenizer = Tokenizer(self.model.hf_tokenizer, self.multilingual, task="transcribe", language=language)
        prompt = list(tokenizer.sot_sequence) + [tokenizer.no_timestamps]
        duration = audio.size / SAMPLE_RATE
        limit = int(12 + 8 * duration)
        result = self.model.model.generate(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None])),
            [prompt], beam_size=self.config.beam_size or (5 if self.multilingual else 1),
            max_length=limit, suppress_blank=True, suppress_tokens=[-1])[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        text = tokenizer.decode(tokens).strip()
        words = [w.strip(".,!?¿¡;:\"'").lower() for w in text.split()]
        trigrams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
        if len(tokens) + len(prompt) >= limit - 1 or len(words) > 6 * duration + 2 or len(set(trigrams)) < len(trigrams):
            return None
        return text

    def transcribe_file(self, path: str | Path, progress: Callable[[float, float | None], None] | None = None
                        ) -> Transcript:
        """Transcribe a recording of any length in windows; `progress(seconds_done, total_or_None)`."""
        started = time.perf_counter()
        total = audio_duration(path)
        segments: list[Segment] = []
        languages: list[str] = []
        done = 0.0
        for offset, window in _quiet_cut_windows(iter_audio_blocks(path, 10.0), self.config.window_seconds):
            if float(np.abs(window).max(initial=0.0)) >= 1e-4:
                found, language = self._segments(window, offset, vad_filter=True)
                segments.extend(found)
                if found:
                    languages.append(language)
            done = offset + window.size / SAMPLE_RATE
            if progress:
                progress(done, total)
        language = max(set(languages), key=languages.count) if languages else (self.config.forced_language() or "")
        text = " ".join(s.text for s in segments).strip()
        return Transcript(text, language, done, segments, time.perf_counter() - started)


def _quiet_cut_windows(blocks: Iterator[np.ndarray], window_seconds: float) -> Iterator[tuple[float, np.ndarray]]:
    """Regroup blocks into ~window_seconds windows, each cut at the quietest 50 ms of its last 5 seconds.

    Cutting in a pause keeps words whole across windows; yields (start offset in seconds, samples).
    """
    window_len = int(window_seconds * SAMPLE_RATE)
    frame = SAMPLE_RATE // 20
    buffer = np.zeros(0, dtype=np.float32)
    offset = 0
    for block in blocks:
        buffer = np.concatenate([buffer, block])
        while buffer.size >= window_len + 5 * SAMPLE_RATE:
            tail = buffer[window_len - 5 * SAMPLE_RATE: window_len]
            energies = np.square(tail[: tail.size // frame * frame].reshape(-1, frame)).mean(axis=1)
            cut = window_len - 5 * SAMPLE_RATE + int(np.argmin(energies)) * frame + frame // 2
            yield offset / SAMPLE_RATE, buffer[:cut]
            offset += cut
            buffer = buffer[cut:]
    if buffer.size:
        yield offset / SAMPLE_RATE, buffer
