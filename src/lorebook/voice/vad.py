"""Voice activity: Silero VAD (the ONNX file shipped inside faster-whisper), run frame by frame.

A live conversation needs to know, as audio arrives, when the user has *finished* speaking. Silero
scores each 32 ms frame (512 samples at 16 kHz) with a speech probability while carrying its recurrent
state (h, c) and 64 samples of context from frame to frame. `EndpointDetector` turns those scores into
events: speech started (used for barge-in) and utterance ended (after `end_silence_ms` of silence).
In between, after `speculate_ms` of silence, a "pause" event carries the utterance so far: transcribing
it while the detector waits out the rest of the silence hides most of the STT time from the user.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from lorebook.voice.audio import SAMPLE_RATE

FRAME = 512  # samples per Silero frame at 16 kHz
CONTEXT = 64  # samples of the previous frame the model sees


@dataclass
class VadConfig:
    """End-of-utterance settings; each help text is also the CLI flag's help."""

    threshold: float = field(default=0.5, metadata={"help": "speech probability above which a frame is speech"})
    end_silence_ms: int = field(default=400, metadata={"help": "silence that ends an utterance (ms)"})
    min_speech_ms: int = field(default=200, metadata={"help": "shorter bursts are ignored (clicks, coughs) (ms)"})
    pad_ms: int = field(default=200, metadata={"help": "audio kept before speech starts (ms)"})
    speculate_ms: int = field(
        default=96, metadata={"help": "silence after which transcription starts speculatively (ms; 0 = off)"}
    )


class SileroVad:
    """Streaming Silero VAD: `probability(frame)` for consecutive 512-sample frames."""

    def __init__(self):
        import onnxruntime
        from faster_whisper.utils import get_assets_path

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 4
        self.session = onnxruntime.InferenceSession(os.path.join(get_assets_path(), "silero_vad_v6.onnx"),
                                                    providers=["CPUExecutionProvider"], sess_options=options)
        self.reset()

    def reset(self) -> None:
        self.h = np.zeros((1, 1, 128), dtype=np.float32)
        self.c = np.zeros((1, 1, 128), dtype=np.float32)
        self.context = np.zeros(CONTEXT, dtype=np.float32)

    def probability(self, frame: np.ndarray) -> float:
        """Speech probability of the next 512-sample frame."""
        window = np.concatenate([self.context, frame.astype(np.float32, copy=False)])[None, :]
        out, self.h, self.c = self.session.run(None, {"input": window, "h": self.h, "c": self.c})
        self.context = window[0, -CONTEXT:]
        return float(out.reshape(-1)[0])


@dataclass
class VadEvent:
    """`kind` is "speech_start", "pause" or "utterance"; `audio` (pause, utterance) is the speech with padding.

    `time` is the stream position in seconds where it happened: for an utterance, the end of speech
    (the detector decides `end_silence_ms` later, at `decided_at`).
    """

    kind: str
    time: float
    audio: np.ndarray | None = None
    decided_at: float = 0.0


class EndpointDetector:
    """Feed audio in any block sizes; get speech-start and finished-utterance events."""

    def __init__(self, config: VadConfig | None = None, vad: SileroVad | None = None):
        self.config = config or VadConfig()
        self.vad = vad or SileroVad()
        self.reset()

    def reset(self) -> None:
        self.vad.reset()
        self._leftover = np.zeros(0, dtype=np.float32)
        self._frames: list[np.ndarray] = []  # pre-roll while idle, the utterance while speaking
        self._position = 0  # samples consumed
        self._speaking = False
        self._speech_frames = 0
        self._silent_frames = 0
        self._start_announced = False
        self.seconds_spent = 0.0  # compute time, for the latency breakdown

    @property
    def speaking(self) -> bool:
        return self._speaking

    def feed(self, audio: np.ndarray) -> Iterator[VadEvent]:
        """Consume 16 kHz mono float32 samples; yields events as they are decided."""
        import time

        cfg = self.config
        ms_per_frame = FRAME * 1000 / SAMPLE_RATE
        end_frames = max(1, int(cfg.end_silence_ms / ms_per_frame))
        min_frames = max(1, int(cfg.min_speech_ms / ms_per_frame))
        pad_frames = max(0, int(cfg.pad_ms / ms_per_frame))
        pause_frames = int(cfg.speculate_ms / ms_per_frame) if cfg.speculate_ms else 0
        data = np.concatenate([self._leftover, audio.astype(np.float32, copy=False)])
        usable = data.size // FRAME * FRAME
        self._leftover = data[usable:]
        for start in range(0, usable, FRAME):
            frame = data[start:start + FRAME]
            started = time.perf_counter()
            is_speech = self.vad.probability(frame) >= cfg.threshold
            self.seconds_spent += time.perf_counter() - started
            self._position += FRAME
            self._frames.append(frame)
            if not self._speaking:
                if is_speech:
                    self._speaking, self._speech_frames, self._silent_frames = True, 1, 0
                    self._start_announced = False
                else:
                    del self._frames[:-pad_frames or len(self._frames)]
                continue
            if is_speech:
                self._speech_frames += 1
                self._silent_frames = 0
                if not self._start_announced and self._speech_frames >= min_frames:
                    self._start_announced = True
                    yield VadEvent("speech_start", self._position / SAMPLE_RATE)
            else:
                self._silent_frames += 1
                if self._silent_frames == pause_frames < end_frames and self._speech_frames >= min_frames:
                    yield VadEvent("pause", self._speech_end(), np.concatenate(self._frames), self._position / SAMPLE_RATE)
                if self._silent_frames >= end_frames:
                    if self._speech_frames >= min_frames:
                        end = self._speech_end()
                        # Trailing silence beyond the padding only costs STT time: drop it.
                        trailing = max(0, self._silent_frames - pad_frames) * FRAME
                        utterance = np.concatenate(self._frames)
                        utterance = utterance[: utterance.size - trailing]
                        yield VadEvent("utterance", end, utterance, self._position / SAMPLE_RATE)
                    self._speaking = False
                    self._frames = self._frames[-pad_frames:] if pad_frames else []

    def _speech_end(self) -> float:
        return (self._position - self._silent_frames * FRAME) / SAMPLE_RATE

    def flush(self) -> Iterator[VadEvent]:
        """End of stream: an utterance still open counts as finished."""
        if self._speaking and self._speech_frames >= max(1, int(self.config.min_speech_ms * SAMPLE_RATE / 1000 / FRAME)):
            end = (self._position - self._silent_frames * FRAME) / SAMPLE_RATE
            yield VadEvent("utterance", end, np.concatenate(self._frames), self._position / SAMPLE_RATE)
        self._speaking = False
        self._frames = []


def find_utterance(audio: np.ndarray, config: VadConfig | None = None,
                   detector: EndpointDetector | None = None) -> VadEvent | None:
    """The first complete utterance in a recording (as if streamed live), or None if nobody speaks."""
    detector = detector or EndpointDetector(config)
    detector.reset()
    block = FRAME * 4
    for start in range(0, audio.size, block):
        for event in detector.feed(audio[start:start + block]):
            if event.kind == "utterance":
                return event
    # Recordings often stop right after the last word: pad with silence so the end can be decided.
    for event in detector.feed(np.zeros(int(detector.config.end_silence_ms * SAMPLE_RATE / 1000) + FRAME, np.float32)):
        if event.kind == "utterance":
            return event
    return next(iter(detector.flush()), None)
