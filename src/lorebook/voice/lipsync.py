"""Mouth cues for a talking face: TTS phoneme timings mapped to the Rhubarb Lip Sync mouth shapes.

Rhubarb Lip Sync names nine mouth shapes that most 2D face rigs draw:

    A  closed (p, b, m)            E  slightly rounded (ɔ, ɜ: "off", "bird")
    B  slightly open, teeth (most consonants, "ee")
    C  open ("eh", "ah", "uh")     F  puckered (u, o, w: "you", "show")
    D  wide open ("aa")            G  teeth on lower lip (f, v)
    H  tongue up (l)               X  rest / silence

Piper reports each phoneme with its length in samples, so the cue track is timed to the audio it came
with. Stress and length marks carry durations of their own in Piper's output; they are folded into the
vowel they belong to. Word gaps are not silences in fluent speech, so they extend the sound before them;
punctuation and the sentence start/end markers are real pauses and become X. Voices that give no timings
(espeak-ng) fall back to cues from the loudness envelope, so every voice can drive the face.

The JSON form is Rhubarb's own (`{"metadata": {...}, "mouthCues": [{"start", "end", "value"}]}`), read by
game-engine and VR plugins that already understand Rhubarb output.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from lorebook.voice.tts import PhonemeTiming, SpeechChunk

SHAPES = "ABCDEFGHX"
CLOSED = ("A", "X")  # shapes with the lips together

# IPA symbols as Piper/espeak-ng write them, one character each (diphthongs arrive as two characters).
_SHAPE_OF = {
    **dict.fromkeys("pbmɱ", "A"),
    **dict.fromkeys("fvʋ", "G"),
    **dict.fromkeys("lɫɭʎ", "H"),
    **dict.fromkeys("uʊowʍɵøœʏ", "F"),
    **dict.fromkeys("ɔɜɝɚɒ", "E"),
    **dict.fromkeys("ɑaɶ", "D"),
    **dict.fromkeys("ɛæʌəɐeɘɤ", "C"),
}
_SILENT = set(".,;:!?—–-…\"()^$_")  # pauses, and Piper's sentence start (^) and end ($) markers
_MODIFIERS = set("ːˑʲʷˠˤ̃ʰ")  # lengthen or colour the sound before them
_STRESS = set("ˈˌ")  # belong to the syllable after them
MIN_CUE = 0.02  # seconds; shorter non-closed cues are merged into a neighbour (they only flicker)
REST_AFTER = 0.06  # seconds of silent audio after which the mouth rests whatever the phoneme says
SILENCE_LEVEL = 0.02  # RMS relative to the chunk's loudest 10 ms that counts as silent


@dataclass
class MouthCue:
    start: float
    end: float
    value: str

    def as_json(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "value": self.value}


def shape_for(phoneme: str) -> str:
    """The mouth shape for one IPA phoneme symbol: B (teeth, slightly open) for any other consonant."""
    if not phoneme.strip() or phoneme in _SILENT:
        return "X"
    return _SHAPE_OF.get(phoneme[0], "B")


def cues_from_phonemes(phonemes: list[PhonemeTiming], duration: float, offset: float = 0.0) -> list[MouthCue]:
    """Cues for one chunk's phoneme timings, shifted by `offset`, covering [offset, offset + duration]."""
    cues: list[MouthCue] = []
    pending_stress = 0.0  # duration of a stress mark, handed to the next real phoneme
    for timing in phonemes:
        start, end = offset + timing.start, offset + timing.end
        if timing.phoneme in _STRESS:
            pending_stress += end - start
            continue
        if timing.phoneme in _MODIFIERS or (timing.phoneme == " " and cues and cues[-1].value != "X"):
            if cues:
                cues[-1].end = end
                continue
        value = shape_for(timing.phoneme)
        start -= pending_stress
        pending_stress = 0.0
        cues.append(MouthCue(start, end, value))
    return _complete(cues, offset, offset + duration)


def cues_from_audio(samples: np.ndarray, sample_rate: int, offset: float = 0.0,
                    frame_seconds: float = 0.04) -> list[MouthCue]:
    """Cues from loudness alone (for voices without phoneme timings): silence X, then B, C, D by level."""
    frame = max(1, int(frame_seconds * sample_rate))
    count = samples.size // frame
    duration = samples.size / sample_rate
    if count == 0:
        return _complete([], offset, offset + duration)
    levels = np.sqrt(np.square(samples[: count * frame].astype(np.float32) / 32768.0).reshape(count, frame).mean(1))
    loud = float(np.percentile(levels, 95)) or 1.0
    cues = []
    for index, level in enumerate(levels / loud):
        value = "X" if level < 0.08 else "B" if level < 0.35 else "C" if level < 0.75 else "D"
        cues.append(MouthCue(offset + index * frame_seconds, offset + (index + 1) * frame_seconds, value))
    return _complete(cues, offset, offset + duration)


def cues_for_chunk(chunk: SpeechChunk, offset: float = 0.0) -> list[MouthCue]:
    """A chunk's cues from its phoneme timings when the voice gave them, else from its loudness."""
    if chunk.phonemes:
        cues = cues_from_phonemes(chunk.phonemes, chunk.duration, offset)
        return rest_in_silence(cues, chunk.samples, chunk.sample_rate, offset)
    return cues_from_audio(chunk.samples, chunk.sample_rate, offset)


def rest_in_silence(cues: list[MouthCue], samples: np.ndarray, sample_rate: int, offset: float = 0.0,
                    min_silence: float = REST_AFTER) -> list[MouthCue]:
    """Close the mouth (X) wherever the audio is silent for `min_silence` seconds or more.

    Phoneme timings place a word-final stop ("pond.") before the pause, but Piper often leaves it
    unreleased: the speaker is already silent while the phoneme still runs. The sound decides.
    """
    frame = max(1, int(0.01 * sample_rate))
    count = samples.size // frame
    if count == 0:
        return cues
    levels = np.sqrt(np.square(samples[: count * frame].astype(np.float32) / 32768.0).reshape(count, frame).mean(1))
    silent = levels < SILENCE_LEVEL * max(float(levels.max()), 1e-6)
    rests, start = [], None
    for index, quiet in enumerate([*silent, False]):
        if quiet and start is None:
            start = index
        elif not quiet and start is not None:
            if (index - start) * 0.01 >= min_silence:
                rests.append((offset + start * 0.01, offset + index * 0.01))
            start = None
    out: list[MouthCue] = []
    for cue in cues:
        pieces = [(cue.start, cue.end)]
        if cue.value not in CLOSED:
            for rest_start, rest_end in rests:
                pieces = [part for a, b in pieces for part in ((a, min(b, rest_start)), (max(a, rest_end), b))
                          if part[1] > part[0]]
        out += [MouthCue(a, b, cue.value) for a, b in pieces]
    end = cues[-1].end if cues else offset + count * 0.01
    return _complete(sorted(out, key=lambda c: c.start), offset, end)


def cues_for_speech(chunks: Iterable[SpeechChunk], pause: float = 0.0) -> list[MouthCue]:
    """One cue track for chunks played one after another, with `pause` seconds of silence between them."""
    cues: list[MouthCue] = []
    offset = 0.0
    for index, chunk in enumerate(chunks):
        if index and pause:
            cues.append(MouthCue(offset, offset + pause, "X"))
            offset += pause
        cues += cues_for_chunk(chunk, offset)
        offset += chunk.duration
    return _merge(cues)


def _complete(cues: list[MouthCue], start: float, end: float) -> list[MouthCue]:
    """Clip to [start, end], close gaps and overlaps, pad with X, drop flicker, merge equal neighbours."""
    out: list[MouthCue] = []
    position = start
    for cue in cues:
        cue_start, cue_end = max(cue.start, position), min(cue.end, end)
        if cue_end <= cue_start:
            continue
        if cue_start > position:  # a gap (rounding, or timings that stop early): the mouth rests
            out.append(MouthCue(position, cue_start, "X"))
        out.append(MouthCue(cue_start, cue_end, cue.value))
        position = cue_end
    if position < end:
        out.append(MouthCue(position, end, "X"))
    return _merge(out)


def _merge(cues: list[MouthCue]) -> list[MouthCue]:
    merged: list[MouthCue] = []
    for cue in cues:
        short = cue.end - cue.start < MIN_CUE and cue.value not in CLOSED
        if merged and (merged[-1].value == cue.value or short):
            merged[-1].end = cue.end
        else:
            merged.append(MouthCue(cue.start, cue.end, cue.value))
    return merged


def rhubarb_json(cues: list[MouthCue], duration: float, sound_file: str = "") -> dict:
    """Rhubarb Lip Sync's JSON export format."""
    return {"metadata": {"soundFile": sound_file, "duration": round(duration, 3)},
            "mouthCues": [cue.as_json() for cue in cues]}
