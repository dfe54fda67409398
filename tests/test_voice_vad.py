"""End-of-utterance detection with the real Silero VAD on real (espeak-ng) speech."""

from __future__ import annotations

import numpy as np
import pytest

from lorebook.voice.audio import SAMPLE_RATE, resample
from lorebook.voice.tts import EspeakSpeaker
from lorebook.voice.vad import EndpointDetector, VadConfig, find_utterance


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    samples, chunks = EspeakSpeaker("en").say("Hello there, how are you doing today?")
    return resample(samples.astype(np.float32) / 32768.0, chunks[0].sample_rate, SAMPLE_RATE)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


def test_finds_the_end_of_speech_close_to_where_it_is(speech):
    audio = np.concatenate([silence(1.0), speech, silence(2.0)])
    event = find_utterance(audio)
    true_end = 1.0 + np.nonzero(np.abs(speech) > 0.02)[0][-1] / SAMPLE_RATE  # espeak pads with silence
    assert event is not None and event.kind == "utterance"
    assert abs(event.time - true_end) < 0.3
    assert event.decided_at - event.time == pytest.approx(0.4, abs=0.1)  # the end_silence_ms wait
    assert speech.size * 0.8 < event.audio.size < speech.size + 0.5 * SAMPLE_RATE


def test_streaming_in_odd_block_sizes_gives_two_utterances(speech):
    audio = np.concatenate([silence(0.5), speech, silence(1.0), speech, silence(1.0)])
    detector = EndpointDetector(VadConfig(end_silence_ms=500))
    events = []
    for start in range(0, audio.size, 777):
        events += detector.feed(audio[start:start + 777])
    kinds = [e.kind for e in events]
    assert [k for k in kinds if k != "pause"] == ["speech_start", "utterance", "speech_start", "utterance"]
    # Each utterance is announced by a pause at the same end of speech, early enough to start STT on it.
    for index, event in enumerate(events):
        if event.kind == "utterance":
            pause = [e for e in events[:index] if e.kind == "pause"][-1]
            assert pause.time == event.time and event.decided_at - pause.decided_at > 0.35
            assert pause.audio.size <= event.audio.size


def test_silence_and_noise_are_not_speech():
    rng = np.random.default_rng(0)
    assert find_utterance(silence(3.0)) is None
    assert find_utterance((0.01 * rng.standard_normal(3 * SAMPLE_RATE)).astype(np.float32)) is None


def test_speech_that_runs_to_the_end_of_the_file_still_counts(speech):
    event = find_utterance(np.concatenate([silence(0.3), speech]))
    assert event is not None and event.audio.size > speech.size * 0.8
