"""`lorebook transcribe / say / talk`: bad input refused in one line; a full voice turn on the real models."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest
from typer.testing import CliRunner

from lorebook.cli.main import app
from lorebook.voice.audio import SAMPLE_RATE, load_audio, to_pcm16, write_wav
from lorebook.voice.stt import SttConfig, Transcriber
from lorebook.voice.text import word_error_rate

runner = CliRunner()


def one_line_error(result, text: str) -> None:
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors and text in result.output and "Traceback" not in result.output


def test_transcribe_refuses_non_audio(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio at all\n" * 10)
    one_line_error(runner.invoke(app, ["transcribe", str(bad)]), "not a readable audio file")
    one_line_error(runner.invoke(app, ["transcribe", str(tmp_path / "missing.wav")]), "does not exist")


def test_transcribe_silence_says_no_speech(tmp_path):
    silent = write_wav(tmp_path / "silent.wav", np.zeros(3 * SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    result = runner.invoke(app, ["transcribe", str(silent)])
    assert result.exit_code == 0 and "no speech found" in result.output


def test_say_refuses_symbol_only_text_and_unknown_format(tmp_path):
    one_line_error(runner.invoke(app, ["say", "🎉 *** 👍", "-o", str(tmp_path / "x.wav")]), "nothing to say")
    one_line_error(runner.invoke(app, ["say", "hello", "-o", str(tmp_path / "x.mp3")]), "cannot write audio")
    one_line_error(runner.invoke(app, ["say", "hola", "-o", str(tmp_path / "x.wav"), "--voice", "xx-nope"]),
                   "espeak-ng has no voice")
    assert not (tmp_path / "x.wav").exists()


def test_say_writes_wav_raw_pcm_and_phoneme_timings(tmp_path):
    wav, pcm, cues = tmp_path / "a.wav", tmp_path / "a.pcm", tmp_path / "cues.json"
    result = runner.invoke(app, ["say", "Hello **world** 👋. Nice to meet you!", "-o", str(wav), "--timings", str(cues)])
    assert result.exit_code == 0, result.output
    with wave.open(str(wav)) as data:
        assert data.getsampwidth() == 2 and data.getnchannels() == 1 and data.getframerate() == 22050
        frames = data.getnframes()
    timings = json.loads(cues.read_text())["phonemes"]
    assert len(timings) > 10 and all(t["end"] >= t["start"] for t in timings)
    assert timings[-1]["end"] == pytest.approx(frames / 22050, abs=0.05)  # cues cover the whole audio
    assert runner.invoke(app, ["say", "Hello world. Nice to meet you!", "-o", str(pcm)]).exit_code == 0
    size = pcm.stat().st_size  # Piper's durations are sampled, so lengths differ a little between runs
    assert size % 2 == 0 and abs(size / 2 - frames) < 0.2 * frames


def test_talk_checks_its_arguments_and_input_before_loading_models(tmp_path):
    one_line_error(runner.invoke(app, ["talk", "--in", "q.wav"]), "--in needs --out")
    silent = write_wav(tmp_path / "q.wav", np.zeros(2 * SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    one_line_error(runner.invoke(app, ["talk", "--in", str(silent), "--out", str(tmp_path / "r.wav")]), "silent")
    noise = write_wav(tmp_path / "n.wav", 0.01 * np.random.default_rng(0).standard_normal(2 * SAMPLE_RATE), SAMPLE_RATE)
    one_line_error(runner.invoke(app, ["talk", "--in", str(noise), "--out", str(tmp_path / "r.wav")]), "no speech")
    assert not (tmp_path / "r.wav").exists()


def test_talk_without_microphone_points_to_files():
    result = runner.invoke(app, ["talk"])
    if result.exit_code == 0:
        pytest.skip("this machine has a microphone")
    one_line_error(result, "--in question.wav --out reply.wav")


@pytest.mark.slow
def test_full_voice_turn_from_files_on_real_models(tmp_path):
    question, reply = tmp_path / "question.wav", tmp_path / "reply.wav"
    assert runner.invoke(app, ["say", "What is the capital of France?", "-o", str(question)]).exit_code == 0
    result = runner.invoke(app, ["talk", "--in", str(question), "--out", str(reply), "--no-log", "--json",
                                 "-o", "temperature=0"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{"):])
    assert "capital of france" in data["transcript"].lower()
    assert "paris" in data["reply"].lower()
    t = data["timings"]
    assert 0 < t["stt"] < t["first_audio"] <= t["total"]
    spoken = load_audio(reply)
    assert spoken.size / SAMPLE_RATE == pytest.approx(t["reply_audio_seconds"], rel=0.25)
    heard = Transcriber(SttConfig(language="en")).transcribe(spoken).text
    assert word_error_rate(data["reply"], heard) <= 0.3, (data["reply"], heard)


@pytest.mark.slow
def test_two_hour_recording_is_transcribed_in_windows_with_bounded_memory(tmp_path):
    import tracemalloc

    from lorebook.voice.tts import PiperSpeaker

    samples, chunks = PiperSpeaker().say("The meeting starts now.")
    speech = load_audio(write_wav(tmp_path / "s.wav", samples, chunks[0].sample_rate))
    rate = 8000  # a phone-quality 2-hour recording, mostly silence, speech near the start and the end
    speech8k = to_pcm16(np.interp(np.arange(0, speech.size, SAMPLE_RATE / rate), np.arange(speech.size), speech))
    path = tmp_path / "two-hours.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(rate)
        for minute in range(120):
            block = np.zeros(60 * rate, dtype=np.int16)
            if minute in (1, 118):
                block[10 * rate: 10 * rate + speech8k.size] = speech8k
            out.writeframes(block.tobytes())
    seen = []
    tracemalloc.start()
    result = Transcriber(SttConfig(language="en")).transcribe_file(path, lambda done, total: seen.append((done, total)))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.duration == pytest.approx(7200, abs=1)
    assert [round(s.start / 60) for s in result.segments] == [1, 118]
    # Phone-quality audio may lose a word ending; what matters is that both windows are heard.
    from lorebook.voice.text import word_error_rate

    texts = [s.text for s in result.segments]
    assert all(word_error_rate("The meeting starts now.", text) <= 0.25 for text in texts), texts
    assert seen[-1][1] == pytest.approx(7200, abs=1) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert len(seen) > 100  # progress reported window by window
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MiB (the whole file as float32 is 439 MiB)"
