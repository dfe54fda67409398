"""Audio decoding: any rate/channels/format to 16 kHz mono, bounded memory, one-line errors on bad files."""

from __future__ import annotations

import tracemalloc
import wave

import numpy as np
import pytest
import soundfile

from lorebook.errors import InputError
from lorebook.voice.audio import audio_duration, iter_audio_blocks, load_audio, resample, to_pcm16, write_wav


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_stereo_44k_is_resampled_to_16k_mono(tmp_path):
    left = tone(2.0, 44100)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, left], axis=1), 44100)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - 32000) < 200
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16000 / audio.size - 440) < 5  # the tone survives resampling


@pytest.mark.parametrize("subtype,rate", [("PCM_U8", 8000), ("PCM_24", 48000), ("FLOAT", 22050)])
def test_other_sample_formats_and_rates(tmp_path, subtype, rate):
    path = tmp_path / f"x-{subtype}.wav"
    soundfile.write(path, tone(1.0, rate), rate, subtype=subtype)
    audio = load_audio(path)
    assert abs(audio.size - 16000) < 200 and 0.3 < np.abs(audio).max() <= 1.0


def test_flac_and_ogg(tmp_path):
    for name in ("x.flac", "x.ogg"):
        soundfile.write(tmp_path / name, tone(1.0, 16000), 16000)
        assert abs(load_audio(tmp_path / name).size - 16000) < 400


@pytest.mark.parametrize("content,message", [
    (b"", "is empty"),
    (b"this is plain text, not audio " * 20, "not a readable audio file"),
    (bytes(range(256)) * 50, "not a readable audio file"),
])
def test_non_audio_files_are_refused_with_one_line(tmp_path, content, message):
    path = tmp_path / "question.wav"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        load_audio(path)
    assert "\n" not in str(info.value) and "fix:" in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(InputError, match="directory"):
        load_audio(tmp_path)


def test_truncated_wav_keeps_the_audio_that_is_there(tmp_path):
    path = tmp_path / "full.wav"
    write_wav(path, tone(2.0, 16000), 16000)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(path.read_bytes()[: 44 + 16000 * 2])  # header claims 2 s, file holds 1 s
    assert abs(load_audio(cut).size - 16000) < 100


def test_load_audio_refuses_overlong_input(tmp_path):
    path = tmp_path / "long.wav"
    write_wav(path, np.zeros(16000 * 40, dtype=np.float32), 16000)
    with pytest.raises(InputError, match="longer than 30 s"):
        load_audio(path, max_seconds=30)


def test_long_file_is_read_in_bounded_memory(tmp_path):
    path = tmp_path / "long.wav"
    minutes = 5
    with wave.open(str(path), "wb") as out:  # written in pieces, like a recorder would
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        for _ in range(minutes * 6):
            out.writeframes(to_pcm16(tone(10.0, 16000)).tobytes())
    assert audio_duration(path) == pytest.approx(minutes * 60, abs=0.1)
    tracemalloc.start()
    total = 0
    for block in iter_audio_blocks(path, block_seconds=10.0):
        assert block.size <= 160000
        total += block.size
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert total == minutes * 60 * 16000
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB: the whole file ({total * 4 / 2**20:.0f} MiB) was held"


def test_write_wav_is_16bit_mono_and_clips(tmp_path):
    path = write_wav(tmp_path / "out.wav", np.array([0.0, 2.0, -2.0, 0.5], dtype=np.float32), 22050)
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 22050)
        samples = np.frombuffer(wav.readframes(4), dtype="<i2")
    assert list(samples[:3]) == [0, 32767, -32767]
    assert not list(tmp_path.glob("*.partial"))


def test_resample_keeps_duration():
    assert resample(tone(1.0, 22050), 22050, 16000).size == 16000
