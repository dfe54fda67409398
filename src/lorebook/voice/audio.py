"""Reading and writing audio: any container PyAV (FFmpeg) can decode, resampled to 16 kHz mono float32.

Speech models want one format: mono float32 in [-1, 1] at 16 kHz. Files arrive as anything (stereo,
44.1 kHz, mp3, 8-bit WAV…), so every read goes through FFmpeg's resampler. Long recordings are read in
blocks (`iter_audio_blocks`) so a 2-hour file never sits in memory whole. Output is 16-bit PCM WAV.
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lorebook.errors import InputError

SAMPLE_RATE = 16000  # what Whisper and Silero VAD expect


def _open_container(path: Path):
    import av

    if not path.exists():
        raise InputError(f"audio file {path} does not exist", "check the path")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not an audio file", "give a .wav/.mp3/.flac/.ogg file")
    if path.stat().st_size == 0:
        raise InputError(f"audio file {path} is empty", "record or export the audio again")
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path} is not a readable audio file ({type(exc).__name__})",
                         "give a WAV, FLAC, MP3 or OGG recording") from None
    if not container.streams.audio:
        container.close()
        raise InputError(f"{path} has no audio stream", "give a WAV, FLAC, MP3 or OGG recording")
    return container


def audio_duration(path: str | Path) -> float | None:
    """Duration in seconds from the container header, or None when the container does not say."""
    container = _open_container(Path(path))
    try:
        stream = container.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / 1_000_000
        return None
    finally:
        container.close()


def iter_audio_blocks(path: str | Path, block_seconds: float = 30.0,
                      sample_rate: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """Decode a file as mono float32 blocks of `block_seconds` (the last one shorter), any input format.

    Memory stays bounded by the block size: frames are decoded, resampled and handed on one at a time.
    """
    import av

    path = Path(path)
    container = _open_container(path)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    block_len = max(1, int(block_seconds * sample_rate))
    pending: list[np.ndarray] = []
    pending_len = 0
    decoded_any = False
    try:
        try:
            for frame in container.decode(audio=0):
                frame.pts = None  # resampler rejects non-monotonic timestamps in some files; ours are unused
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().reshape(-1))
                    pending_len += pending[-1].size
                while pending_len >= block_len:
                    joined = np.concatenate(pending)
                    yield joined[:block_len].astype(np.float32) / 32768.0
                    decoded_any = True
                    pending, pending_len = [joined[block_len:]], joined.size - block_len
            for out in resampler.resample(None):  # flush the resampler's tail
                pending.append(out.to_ndarray().reshape(-1))
                pending_len += pending[-1].size
        except av.error.FFmpegError as exc:
            if not decoded_any and pending_len == 0:
                raise InputError(f"{path} could not be decoded ({exc.strerror or type(exc).__name__})",
                                 "the file is corrupt or not audio; export it again as WAV") from None
            # A truncated file: keep what decoded cleanly (losing data silently would be worse than a tail).
        if pending_len:
            yield np.concatenate(pending).astype(np.float32) / 32768.0
            decoded_any = True
    finally:
        container.close()
    if not decoded_any:
        raise InputError(f"{path} contains no audio samples", "record or export the audio again")


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None) -> np.ndarray:
    """The whole file as mono float32 at `sample_rate`; refuses files longer than `max_seconds`."""
    blocks, total = [], 0
    for block in iter_audio_blocks(path, 30.0, sample_rate):
        blocks.append(block)
        total += block.size
        if max_seconds is not None and total > max_seconds * sample_rate:
            raise InputError(f"{path} is longer than {max_seconds:.0f} s",
                             "use `lorebook transcribe` for long recordings, or trim the file")
    return np.concatenate(blocks)


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] as int16 samples (clipped, so loud input never wraps around)."""
    if samples.dtype == np.int16:
        return samples
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Linear-interpolation resampling of a mono float array (enough for speech going into VAD/STT)."""
    if source_rate == target_rate or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    duration = samples.size / source_rate
    target_len = max(1, round(duration * target_rate))
    positions = np.linspace(0, samples.size - 1, target_len)
    return np.interp(positions, np.arange(samples.size), samples).astype(np.float32)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write mono audio (float or int16) as a 16-bit PCM WAV file, atomically (no half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with wave.open(str(partial), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(to_pcm16(np.asarray(samples)).tobytes())
    partial.replace(path)
    return path
