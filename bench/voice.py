"""Voice benchmark: latency of a spoken turn, streaming vs. the non-streaming baseline, and real-time factors.

    .venv/bin/python bench/voice.py [--turns 10] [--max-tokens 80]

Questions are synthesized with Piper into WAV files (silence before and after, like a recording), then
each file is streamed through the end-of-utterance detector in 32 ms blocks as if it came from a
microphone. Latency is measured from the true end of speech to the first byte of reply audio:
  VAD wait (the silence the detector needs to be sure) + STT + LLM to first sentence + TTS of it.
From the end of speech on, audio is fed at real-time pace. Each question runs three ways: streaming with
speculative STT (transcription starts at the first pause, while the detector waits out the silence),
streaming without it, and the baseline without streaming: whole LLM reply, then TTS of the whole reply.
All run greedy (temperature 0) on the same questions, so they say the same thing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lorebook.voice.audio import SAMPLE_RATE, load_audio, write_wav
from lorebook.voice.pipeline import VoicePipeline
from lorebook.voice.stt import SttConfig, Transcriber
from lorebook.voice.tts import EspeakSpeaker, PiperSpeaker
from lorebook.voice.vad import FRAME

QUESTIONS = [  # each about three seconds when spoken, the length the latency goal names
    "Could you tell me what the capital city of France is called?",
    "How many legs does a spider have, and how many does an ant have?",
    "What color is the sky on a clear summer day, and why is that?",
    "Who wrote the famous play about Romeo and Juliet, and when was it written?",
    "What is the largest planet in our solar system, and how big is it?",
    "How long should I boil an egg if I want the yolk to stay soft?",
    "At what temperature does water boil when you are at sea level?",
    "Can you name a famous painter from Italy and one of their paintings?",
    "Why do the leaves on most trees change their color in the autumn?",
    "Which language do most people speak in Brazil, and why is that so?",
    "What is the name of the tallest mountain on Earth, and where is it?",
    "How many days are there in a leap year, and how often does one happen?",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def make_questions(folder: Path, count: int) -> list[Path]:
    speaker = PiperSpeaker()
    files = []
    for index, text in enumerate((QUESTIONS * 2)[:count]):
        samples, chunks = speaker.say(text)
        rate = chunks[0].sample_rate
        pad = np.zeros(int(0.5 * rate), np.int16)
        files.append(write_wav(folder / f"q{index:02d}.wav", np.concatenate([pad, samples, pad, pad, pad]), rate))
    return files


def live_turn(pipeline: VoicePipeline, path: Path, speculate: bool) -> dict:
    """Stream a recording through the detector, then run the streaming turn; milestones in seconds.

    Audio before the end of speech is fed as fast as it is consumed; from the end of speech on, it is
    fed at real-time pace, so the silence the detector waits for costs wall-clock time as with a
    microphone, and speculative transcription (started at the pause) can overlap it.
    """
    audio = load_audio(path)
    detector = pipeline.detector()
    utterance, pause, anchor, anchor_wall = None, None, None, None
    for start in range(0, audio.size, FRAME):
        if anchor is not None:
            time.sleep(max(0.0, anchor_wall + (start + FRAME) / SAMPLE_RATE - anchor.time - time.perf_counter()))
        for event in detector.feed(audio[start:start + FRAME]):
            if event.kind == "pause":  # every pause (commas too); the last one before the utterance counts
                pause = event
                if anchor is None:  # real-time pacing starts at the first pause
                    anchor, anchor_wall = event, time.perf_counter() - (event.decided_at - event.time)
                if speculate:
                    pipeline.speculate(event)
            if event.kind == "utterance":
                utterance = event
        if utterance is not None:
            break
    speech_end_wall = anchor_wall + (utterance.time - anchor.time) if utterance and anchor else None
    assert utterance is not None and pause is not None, f"no speech detected in {path}"
    pipeline.session.reset()
    respond_wall = time.perf_counter()
    done = None
    for event in pipeline.respond(utterance.audio, speech_end=utterance.time):
        done = event
    t = done.timings
    offset = respond_wall - speech_end_wall  # the detector's silence wait, as the user lives it
    return {"question_s": utterance.audio.size / SAMPLE_RATE, "vad_wait": offset,
            "vad_compute": detector.seconds_spent, "stt": offset + t.stt,
            "llm_first_token": offset + t.llm_first_token, "first_sentence": offset + t.first_sentence,
            "tts_first_chunk": t.tts_first_chunk, "first_audio": offset + t.first_audio,
            "reply": done.reply, "audio": utterance.audio}


def baseline_turn(pipeline: VoicePipeline, utterance: np.ndarray, vad_wait: float) -> float:
    """The same turn without streaming: whole reply, then TTS of the whole reply."""
    pipeline.session.reset()
    started = time.perf_counter()
    text = pipeline.transcriber.transcribe(utterance).text
    reply = "".join(pipeline.reply(text))
    pipeline.speaker.say(reply)
    return vad_wait + time.perf_counter() - started


def real_time_factors() -> list[tuple[str, float, float]]:
    rows = []
    piper, espeak = PiperSpeaker(), EspeakSpeaker("es")
    english = " ".join(QUESTIONS[:6])
    spanish = "Buenos días. Me gustaría reservar una mesa para dos personas. El tren sale a las nueve."
    for name, speaker, text in (("TTS Piper en_US-joe-medium", piper, english), ("TTS espeak-ng es", espeak, spanish)):
        started = time.perf_counter()
        samples, chunks = speaker.say(text)
        seconds = time.perf_counter() - started
        rows.append((name, samples.size / chunks[0].sample_rate, seconds))
        if name.startswith("TTS Piper"):
            en_audio = load_audio(write_wav(Path(tempfile.mkdtemp()) / "en.wav", samples, chunks[0].sample_rate))
        else:
            es_audio = load_audio(write_wav(Path(tempfile.mkdtemp()) / "es.wav", samples, chunks[0].sample_rate))
    for name, config, audio in (("STT Whisper tiny.en int8", SttConfig(language="en"), en_audio),
                                ("STT Whisper base int8 (es, beam 5)", SttConfig(language="es"), es_audio)):
        result = Transcriber(config).transcribe(audio)
        rows.append((name, result.duration, result.seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=80)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    folder = Path(tempfile.mkdtemp(prefix="voice-bench-"))
    files = make_questions(folder, args.turns)
    started = time.perf_counter()
    pipeline = VoicePipeline.for_persona("assistant", log=False,
                                         option_pairs=["temperature=0", f"max_tokens={args.max_tokens}"])
    print(f"pipeline loaded and warmed in {time.perf_counter() - started:.1f} s; {len(files)} turns\n")
    turns, plain, baseline = [], [], []
    for path in files:
        turn = live_turn(pipeline, path, speculate=True)
        turns.append(turn)
        plain.append(live_turn(pipeline, path, speculate=False)["first_audio"])
        baseline.append(baseline_turn(pipeline, turn["audio"], turn["vad_wait"]))
        print(f"  {path.name}: {turn['question_s']:.1f} s question -> first audio {turn['first_audio']:.2f} s "
              f"(no speculation {plain[-1]:.2f} s, baseline {baseline[-1]:.2f} s): {turn['reply'][:60]!r}")
    keys = ["vad_wait", "vad_compute", "stt", "llm_first_token", "first_sentence", "tts_first_chunk", "first_audio"]
    print("\n| stage (seconds from end of speech, except *) | p50 | p95 |\n|---|---|---|")
    labels = {"vad_wait": "VAD silence wait", "vad_compute": "VAD compute for the whole question *",
              "stt": "+ STT done", "llm_first_token": "+ LLM first token", "first_sentence": "+ first sentence",
              "tts_first_chunk": "TTS of the first sentence alone *", "first_audio": "**first reply audio**"}
    for key in keys:
        values = [t[key] for t in turns]
        print(f"| {labels[key]} | {percentile(values, 0.5):.2f} | {percentile(values, 0.95):.2f} |")
    streaming = [t["first_audio"] for t in turns]
    p50s, p50b = statistics.median(streaming), statistics.median(baseline)
    print(f"| same, without speculative STT | {statistics.median(plain):.2f} | {percentile(plain, 0.95):.2f} |")
    print(f"| baseline (whole reply, then TTS) first audio | {p50b:.2f} | {percentile(baseline, 0.95):.2f} |")
    print(f"\nstreaming p50 {p50s:.2f} s vs baseline p50 {p50b:.2f} s: {p50b / p50s:.1f}x sooner "
          f"(speculative STT saves {statistics.median(plain) - p50s:.2f} s at p50); "
          f"mean question {statistics.mean(t['question_s'] for t in turns):.1f} s")
    print("\n| model | audio s | compute s | real-time factor |\n|---|---|---|---|")
    for name, audio_s, compute_s in real_time_factors():
        print(f"| {name} | {audio_s:.1f} | {compute_s:.2f} | {compute_s / audio_s:.3f} |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
