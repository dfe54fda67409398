"""The streaming voice turn: events, sentence-by-sentence speech before the reply ends, barge-in."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from lorebook.errors import InputError
from lorebook.voice.audio import SAMPLE_RATE, resample
from lorebook.voice.pipeline import VoicePipeline
from lorebook.voice.stt import SttConfig, Transcriber
from lorebook.voice.tts import EspeakSpeaker

REPLY = "Paris is the capital of France. It is known for the Eiffel Tower. Many people visit it every year."


class FakeModel:
    """Streams a fixed reply word by word and records how far it got (stands in for an LLM)."""

    def __init__(self):
        self.produced = 0
        self.finished = False
        self.closed = False
        self.questions = []

    def reply(self, text: str):
        self.questions.append(text)
        try:
            for word in REPLY.split(" "):
                self.produced += 1
                yield word + " "
            self.finished = True
        except GeneratorExit:
            self.closed = True
            raise


@pytest.fixture(scope="module")
def speaker():
    return EspeakSpeaker("en-us")


@pytest.fixture(scope="module")
def transcriber():
    return Transcriber(SttConfig(language="en"))


@pytest.fixture(scope="module")
def question(speaker) -> np.ndarray:
    samples, chunks = speaker.say("What is the capital of France?")
    return resample(samples.astype(np.float32) / 32768.0, chunks[0].sample_rate, SAMPLE_RATE)


def test_turn_streams_audio_before_the_reply_is_finished(speaker, transcriber, question):
    model = FakeModel()
    pipeline = VoicePipeline(model.reply, transcriber, speaker)
    events = []
    finished_at_first_audio = None
    for event in pipeline.respond(question):
        events.append(event)
        if event.kind == "audio" and finished_at_first_audio is None:
            finished_at_first_audio = model.finished
    kinds = [e.kind for e in events]
    assert kinds[0] == "transcript" and kinds[-1] == "done"
    assert "capital of france" in events[0].transcript.text.lower()
    assert model.questions == [events[0].transcript.text]
    assert finished_at_first_audio is False  # first sentence spoken while the model was still writing
    audio = [e for e in events if e.kind == "audio"]
    assert [a.chunk.text for a in audio] == ["Paris is the capital of France.", "It is known for the Eiffel Tower.",
                                             "Many people visit it every year."]
    assert all(a.chunk.samples.dtype == np.int16 and len(a.chunk.pcm) == 2 * a.chunk.samples.size for a in audio)
    done = events[-1]
    assert done.reply == REPLY and not done.interrupted
    t = done.timings
    assert 0 < t.stt <= t.llm_first_token <= t.first_sentence <= t.first_audio <= t.total
    assert t.reply_audio_seconds == pytest.approx(sum(a.chunk.duration for a in audio))


def test_barge_in_stops_generation_and_speech(speaker, transcriber, question):
    model = FakeModel()
    pipeline = VoicePipeline(model.reply, transcriber, speaker)
    events = []
    for event in pipeline.respond(question):
        events.append(event)
        if event.kind == "audio":
            threading.Thread(target=pipeline.cancel).start()  # the user speaks again, from another thread
            threading.Event().wait(0.05)
    done = events[-1]
    assert done.kind == "done" and done.interrupted
    assert model.closed and not model.finished and model.produced < len(REPLY.split())
    assert sum(e.kind == "audio" for e in events) == 1
    assert done.reply.startswith("Paris is the capital of France.") and done.reply != REPLY


def test_callback_api_and_typed_turn(speaker, transcriber, question):
    model = FakeModel()
    pipeline = VoicePipeline(model.reply, transcriber, speaker)
    seen = []
    done = None
    for event in pipeline.respond_text("Tell me about Paris"):
        seen.append(event.kind)
        done = event
    assert seen[0] == "text" and "audio" in seen and done.reply == REPLY
    collected = []
    final = pipeline.run(question, collected.append)
    assert final is collected[-1] and final.kind == "done" and collected[0].kind == "transcript"
    assert model.questions[0] == "Tell me about Paris" and len(model.questions) == 2


def test_silent_question_is_refused(speaker, transcriber):
    pipeline = VoicePipeline(FakeModel().reply, transcriber, speaker)
    with pytest.raises(InputError, match="no speech recognized"):
        list(pipeline.respond(np.zeros(SAMPLE_RATE, dtype=np.float32)))


@pytest.mark.slow
def test_persona_picks_language_voice_and_keeps_history_after_interruption(tiny_model_dir):
    pipeline = VoicePipeline.for_persona("customs-agent-es", model=str(tiny_model_dir), log=False,
                                         option_pairs=["max_tokens=40", "temperature=0"])
    assert pipeline.speaker.name == "espeak:es"
    assert pipeline.transcriber.config.model_name() == "base"
    assert pipeline.transcriber.config.forced_language() == "es"
    for event in pipeline.respond_text("Buenos días"):
        if event.kind == "text":
            pipeline.cancel()
    roles = [m["role"] for m in pipeline.session.conversation.messages()]
    assert roles == ["system", "user", "assistant"]  # the cut-off answer is kept, so turns still alternate


class CountingTranscriber:
    """Wraps the real transcriber and counts calls, to see whether a speculative transcript is reused."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def transcribe(self, audio):
        self.calls += 1
        return self.inner.transcribe(audio)


def test_transcript_started_at_the_pause_is_reused_only_for_the_same_utterance(speaker, transcriber, question):
    from lorebook.voice.vad import EndpointDetector

    counting = CountingTranscriber(transcriber)
    pipeline = VoicePipeline(FakeModel().reply, counting, speaker)
    audio = np.concatenate([np.zeros(8000, np.float32), question, np.zeros(16000, np.float32)])
    events = list(EndpointDetector(pipeline.vad_config).feed(audio))
    pause = [e for e in events if e.kind == "pause"][-1]
    utterance = next(e for e in events if e.kind == "utterance")
    pipeline.speculate(pause)
    transcript = next(iter(pipeline.respond(utterance.audio, speech_end=utterance.time)))
    assert "capital of france" in transcript.transcript.text.lower() and counting.calls == 1
    pipeline.speculate(pause)  # speech went on after this pause: a later end of speech
    next(iter(pipeline.respond(utterance.audio, speech_end=utterance.time + 1.0)))
    assert counting.calls == 3
