"""Mouth cues (Rhubarb shapes) from TTS phoneme timings: mapping, a gap-free track, and timing on real speech."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lorebook.voice.lipsync import CLOSED, cues_for_speech, cues_from_audio, cues_from_phonemes, shape_for
from lorebook.voice.tts import PhonemeTiming, SpeechChunk


def timings(*items) -> list[PhonemeTiming]:
    out, position = [], 0.0
    for phoneme, length in items:
        out.append(PhonemeTiming(phoneme, position, position + length))
        position += length
    return out


def assert_gap_free(cues, duration: float) -> None:
    assert cues[0].start == 0.0 and abs(cues[-1].end - duration) < 1e-6
    for before, after in zip(cues, cues[1:]):
        assert abs(before.end - after.start) < 1e-9 and after.end > after.start and before.value != after.value
    assert {c.value for c in cues} <= set("ABCDEFGHX")


def test_shapes_follow_rhubarb_groups():
    assert [shape_for(p) for p in "pbm"] == ["A"] * 3
    assert [shape_for(p) for p in ("f", "v", "l", "u", "w", "ɑ", "æ", "ɔ", "s", "t", ",", " ", "^")] == \
        ["G", "G", "H", "F", "F", "D", "C", "E", "B", "B", "X", "X", "X"]


def test_phoneme_track_covers_audio_without_gaps_and_folds_marks():
    # "^ b ˈɑ ː b ." then audio that runs on after the last timing
    track = cues_from_phonemes(timings(("^", 0.05), ("b", 0.06), ("ˈ", 0.04), ("ɑ", 0.1), ("ː", 0.05),
                                       ("b", 0.07), (".", 0.08)), duration=0.6)
    assert_gap_free(track, 0.6)
    assert [c.value for c in track] == ["X", "A", "D", "A", "X"]
    open_vowel = track[2]
    assert open_vowel.start == pytest.approx(0.11) and open_vowel.end == pytest.approx(0.30)  # stress + length folded in


def test_sentences_with_pauses_make_one_track():
    chunk = SpeechChunk(np.ones(2205, np.int16) * 3000, 22050, "ma", timings(("m", 0.05), ("a", 0.05)))
    cues = cues_for_speech([chunk, chunk], pause=0.15)
    assert_gap_free(cues, 0.35)
    assert [c.value for c in cues] == ["A", "D", "X", "A", "D"]


def test_loudness_fallback_rests_in_silence():
    rate = 16000
    tone = (np.sin(np.arange(rate // 2) * 0.2) * 12000).astype(np.int16)
    audio = np.concatenate([np.zeros(rate // 4, np.int16), tone, np.zeros(rate // 4, np.int16)])
    cues = cues_from_audio(audio, rate)
    assert_gap_free(cues, audio.size / rate)
    assert cues[0].value == "X" and cues[-1].value == "X" and any(c.value not in CLOSED for c in cues)


def silent_stretches(samples: np.ndarray, rate: int, shortest: float = 0.1) -> list[tuple[float, float]]:
    """Stretches of audio at least `shortest` long whose 10 ms RMS stays under 2 % of the loudest."""
    frame = rate // 100
    count = samples.size // frame
    levels = np.sqrt(np.square(samples[: count * frame].astype(np.float32)).reshape(count, frame).mean(1))
    quiet = levels < 0.02 * levels.max()
    found, start = [], None
    for index, flag in enumerate([*quiet, False]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            if (index - start) / 100 >= shortest:
                found.append((start / 100, index / 100))
            start = None
    return found


@pytest.mark.slow
def test_cues_line_up_with_piper_silences_and_bilabials(tmp_path):
    from lorebook.voice.tts import load_speaker

    chunks = list(load_speaker("en").speak("Please bring me a big map, Bob. Maybe tomorrow, we will walk by the pond."))
    cues = cues_for_speech(chunks)
    samples = np.concatenate([c.samples for c in chunks])
    rate = chunks[0].sample_rate
    assert_gap_free(cues, samples.size / rate)

    def shape_at(t: float) -> str:
        return next(c.value for c in cues if c.start <= t < c.end)

    tolerance = 0.06
    stretches = silent_stretches(samples, rate)
    assert len(stretches) >= 2  # the comma and the full stop at least
    for start, end in stretches:  # inside every pause (60 ms from its edges) the lips are closed
        for t in np.arange(start + tolerance, end - tolerance, 0.005):
            assert shape_at(t) in CLOSED, (start, end, t, shape_at(t))
    offset, bilabials = 0.0, 0
    for chunk in chunks:  # every p, b, m has a closed-lip cue within 60 ms of it
        for timing in chunk.phonemes:
            if timing.phoneme in ("p", "b", "m"):
                bilabials += 1
                near = [c for c in cues if c.value in CLOSED and c.start < offset + timing.end + tolerance
                        and c.end > offset + timing.start - tolerance]
                assert near, (timing, offset)
        offset += chunk.duration
    assert bilabials >= 8
    for cue in cues:  # and long rests are really quiet: no X over speech
        if cue.value == "X" and cue.end - cue.start > 2 * tolerance + 0.01:
            segment = samples[int((cue.start + tolerance) * rate): int((cue.end - tolerance) * rate)].astype(np.float32)
            assert np.sqrt(np.mean(segment ** 2)) < 0.05 * np.abs(samples).max(), cue
    (tmp_path / "cues.json").write_text(json.dumps([c.as_json() for c in cues]))
