"""The streaming voice turn: utterance audio → STT → LLM stream → sentence-by-sentence TTS.

Latency is the point. The reply is spoken sentence by sentence while the model is still generating,
so the first audio follows the first sentence, not the whole answer. `VoicePipeline.respond(audio)` is a
plain generator of events (transcript, text deltas, audio chunks with phoneme timings, done); the CLI
plays the audio chunks and a web server can forward them over a socket. `cancel()` (barge-in: the
user started talking again) may be called from any thread: the generator stops at the next token or
sentence, closes the LLM stream (which ends generation) and reports `interrupted=True`.

One pipeline holds one conversation (a `ChatSession`), so consecutive turns share history.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from lorebook.errors import InputError
from lorebook.voice.audio import SAMPLE_RATE
from lorebook.voice.stt import SttConfig, Transcriber, Transcript
from lorebook.voice.text import SentenceSplitter
from lorebook.voice.tts import Speaker, SpeechChunk, load_speaker
from lorebook.voice.vad import EndpointDetector, VadConfig, VadEvent


@dataclass
class TurnTimings:
    """Seconds from the start of the turn (the moment the utterance was handed over) to each milestone."""

    stt: float = 0.0
    llm_first_token: float = 0.0
    first_sentence: float = 0.0
    first_audio: float = 0.0  # first TTS chunk ready: the first byte a player could play
    tts_first_chunk: float = 0.0  # synthesis time of that first chunk alone
    total: float = 0.0
    reply_audio_seconds: float = 0.0


@dataclass
class TranscriptEvent:
    transcript: Transcript
    kind: str = "transcript"


@dataclass
class TextEvent:
    text: str  # a delta of the reply text as the model writes it
    kind: str = "text"


@dataclass
class AudioEvent:
    chunk: SpeechChunk  # .samples (int16), .pcm (bytes), .sample_rate, .text, .phonemes (timings)
    index: int
    kind: str = "audio"


@dataclass
class DoneEvent:
    reply: str
    interrupted: bool
    timings: TurnTimings = field(default_factory=TurnTimings)
    kind: str = "done"


Event = TranscriptEvent | TextEvent | AudioEvent | DoneEvent


class VoicePipeline:
    """Turns spoken questions into spoken answers; one instance per conversation."""

    def __init__(self, reply: Callable[[str], Iterable[str]], transcriber: Transcriber, speaker: Speaker,
                 vad_config: VadConfig | None = None, session=None):
        self.reply = reply
        self.transcriber = transcriber
        self.speaker = speaker
        self.vad_config = vad_config or VadConfig()
        self.session = session  # the ChatSession behind `reply`, if any (to record interrupted answers)
        self._cancel = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._speculation = None  # (speech end time, Future[Transcript]) from the latest pause

    @classmethod
    def for_persona(cls, persona: str | None = None, model: str | None = None, adapters: list[str] | None = None,
                    engine: str = "torch", stt: SttConfig | None = None, voice: str | None = None,
                    option_pairs: list[str] | None = None, log: bool = True) -> VoicePipeline:
        """Everything a persona implies: its model and prompt, STT in its language, TTS in its voice."""
        from lorebook.chat.session import ChatSession, get_engine, resolve_setup

        chosen, model_name, all_adapters, options = resolve_setup(persona, model, adapters, option_pairs)
        stt = stt or SttConfig()
        if stt.language is None:
            stt.language = chosen.language
        speaker = load_speaker(voice or chosen.voice, chosen.language)
        transcriber = Transcriber(stt)
        session = ChatSession(get_engine(model_name, all_adapters, engine), chosen, options, log=log,
                              persona_name=chosen.name, adapters=all_adapters)
        pipeline = cls(session.reply, transcriber, speaker, session=session)
        pipeline.warm_up()
        return pipeline

    def warm_up(self) -> None:
        """Run each model once on a tiny input: first ONNX/CTranslate2 runs are several times slower."""
        chunk = next(iter(self.speaker.speak("Hello.")))
        speech = chunk.samples.astype(np.float32) / 32768.0
        from lorebook.voice.audio import resample

        self.transcriber.transcribe(resample(speech, chunk.sample_rate, SAMPLE_RATE))

    def detector(self) -> EndpointDetector:
        """A fresh end-of-utterance detector for a live audio stream."""
        return EndpointDetector(self.vad_config)

    def cancel(self) -> None:
        """Barge-in: stop the turn in progress (safe to call from another thread)."""
        self._cancel.set()

    def speculate(self, pause: VadEvent) -> None:
        """Start transcribing at a pause in speech, before the detector has decided the utterance ended.

        If the utterance that follows ends at the same moment (nobody spoke again), `respond` uses this
        transcript instead of starting over; otherwise it is discarded. Runs in a worker thread so the
        caller keeps feeding the detector.
        """
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="speculative-stt")
        if self._speculation is not None:
            self._speculation[1].cancel()  # speech went on after the earlier pause: that guess is stale
        self._speculation = (pause.time, self._pool.submit(self.transcriber.transcribe, pause.audio))

    def respond(self, audio: np.ndarray, speech_end: float | None = None) -> Iterator[Event]:
        """One turn from an end-pointed utterance (16 kHz mono float32).

        `speech_end` (the utterance event's `time`) lets a transcript started by `speculate` be reused.
        """
        self._cancel.clear()
        started = time.perf_counter()
        speculation, self._speculation = self._speculation, None
        if speculation is not None and speech_end is not None and speculation[0] == speech_end:
            transcript = speculation[1].result()
        else:
            transcript = self.transcriber.transcribe(audio)
        yield TranscriptEvent(transcript)
        if not transcript.text.strip():
            raise InputError("no speech recognized in the question audio",
                             "speak closer to the microphone, or check the recording is not silent")
        yield from self._answer(transcript.text, started, time.perf_counter() - started)

    def respond_text(self, text: str) -> Iterator[Event]:
        """One turn from typed text: the same streaming reply and speech, no STT."""
        self._cancel.clear()
        yield from self._answer(text, time.perf_counter(), 0.0)

    def run(self, audio: np.ndarray, on_event: Callable[[Event], None]) -> DoneEvent:
        """Callback form of `respond`: calls `on_event` for each event, returns the final one."""
        done = None
        for event in self.respond(audio):
            on_event(event)
            done = event
        return done

    def _answer(self, text: str, started: float, stt_seconds: float) -> Iterator[Event]:
        timings = TurnTimings(stt=stt_seconds)
        splitter = SentenceSplitter()
        pieces: list[str] = []
        audio_index = 0
        stream = iter(self.reply(text))
        interrupted = False
        try:
            for delta in stream:
                if self._cancel.is_set():
                    interrupted = True
                    break
                if not pieces:
                    timings.llm_first_token = time.perf_counter() - started
                pieces.append(delta)
                yield TextEvent(delta)
                for sentence in splitter.push(delta):
                    for event in self._speak(sentence, audio_index, started, timings):
                        audio_index += 1
                        yield event
                    if self._cancel.is_set():
                        break
        finally:
            if interrupted or self._cancel.is_set():
                stream_close = getattr(stream, "close", None)
                if stream_close:
                    stream_close()  # GeneratorExit inside the engine's loop: generation stops now
        interrupted = interrupted or self._cancel.is_set()
        if not interrupted:
            for sentence in splitter.flush():
                if self._cancel.is_set():
                    break
                for event in self._speak(sentence, audio_index, started, timings):
                    audio_index += 1
                    yield event
        # A cancel that arrives before the turn is over (the last sentences were still being voiced) interrupts it.
        interrupted = interrupted or self._cancel.is_set()
        reply = "".join(pieces).strip()
        if interrupted and self.session is not None:
            self.session.conversation.add("assistant", (reply + " …").strip())  # keep turns alternating
        timings.total = time.perf_counter() - started
        yield DoneEvent(reply, interrupted, timings)

    def _speak(self, sentence: str, index: int, started: float, timings: TurnTimings) -> Iterator[AudioEvent]:
        if not timings.first_sentence:
            timings.first_sentence = time.perf_counter() - started
        try:
            chunks = self.speaker.speak(sentence)
            for chunk in chunks:
                if self._cancel.is_set():
                    return
                if not timings.first_audio:
                    timings.first_audio = time.perf_counter() - started
                    timings.tts_first_chunk = chunk.seconds
                timings.reply_audio_seconds += chunk.duration
                yield AudioEvent(chunk, index)
        except InputError:
            return  # a "sentence" of only symbols: nothing to say, keep going


def utterance_from_file(audio: np.ndarray, config: VadConfig | None = None) -> VadEvent:
    """The spoken question in a recording, end-pointed as if it were live; errors if nobody speaks."""
    from lorebook.voice.vad import find_utterance

    if audio.size == 0 or float(np.abs(audio).max(initial=0.0)) < 1e-4:
        raise InputError("the question audio is silent", "record the question again")
    event = find_utterance(audio, config)
    if event is None:
        raise InputError(f"no speech found in {audio.size / SAMPLE_RATE:.1f} s of audio",
                         "record the question again, closer to the microphone")
    return event
