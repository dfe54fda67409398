"""Live conversation through the sound card: microphone → VAD → pipeline → speakers, with barge-in.

Three threads: PortAudio's input callback queues 32 ms blocks; the main loop feeds them to the
end-of-utterance detector and, while a reply plays, watches for the user speaking again (barge-in:
`pipeline.cancel()` and the player drops its queue); a worker runs `pipeline.respond` and queues audio
chunks for the player thread. Echo from loudspeakers can trigger barge-in; use headphones.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import numpy as np

from lorebook.errors import InputError
from lorebook.voice.audio import SAMPLE_RATE
from lorebook.voice.pipeline import AudioEvent, DoneEvent, Event, VoicePipeline
from lorebook.voice.vad import FRAME


def sound_devices() -> tuple[object, bool, bool]:
    """(sounddevice module, has input, has output); refuses with a one-line error when there is no audio."""
    try:
        import sounddevice
    except (ImportError, OSError):
        raise InputError("no sound system (PortAudio) available for the microphone",
                         "use `lorebook talk --in question.wav --out reply.wav`") from None
    try:
        devices = sounddevice.query_devices()
    except sounddevice.PortAudioError:
        devices = []
    has_in = any(d.get("max_input_channels", 0) > 0 for d in devices)
    has_out = any(d.get("max_output_channels", 0) > 0 for d in devices)
    if not has_in:
        raise InputError("no microphone found", "use `lorebook talk --in question.wav --out reply.wav`")
    return sounddevice, has_in, has_out


def converse(pipeline: VoicePipeline, on_event: Callable[[Event], None], turns: int | None = None) -> None:
    """Listen, answer, repeat (until Ctrl-C or `turns` turns)."""
    sd, _, has_out = sound_devices()
    mic: queue.Queue[np.ndarray] = queue.Queue()
    detector = pipeline.detector()
    done_turns = 0

    def on_audio(indata, frames, time_info, status):  # PortAudio thread: copy and hand over only
        mic.put(indata[:, 0].copy())

    with sd.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="float32", blocksize=FRAME, callback=on_audio):
        while turns is None or done_turns < turns:
            for vad_event in detector.feed(mic.get()):
                if vad_event.kind == "pause":
                    pipeline.speculate(vad_event)
                if vad_event.kind != "utterance":
                    continue
                _turn(pipeline, vad_event, on_event, sd if has_out else None, mic, detector)
                done_turns += 1


def _turn(pipeline, utterance, on_event, sd, mic, detector) -> None:
    """Run one reply while still listening; user speech during it cancels generation and playback."""
    playback: queue.Queue = queue.Queue()
    stop_playing = threading.Event()

    def work():
        try:
            for event in pipeline.respond(utterance.audio, speech_end=utterance.time):
                on_event(event)
                if isinstance(event, AudioEvent):
                    playback.put(event.chunk)
                if isinstance(event, DoneEvent):
                    break
        except InputError as exc:
            on_event(DoneEvent(f"({exc.problem})", interrupted=False))
        finally:
            playback.put(None)

    def play():
        while (chunk := playback.get()) is not None:
            if stop_playing.is_set() or sd is None:
                continue
            sd.play(chunk.samples.astype(np.float32) / 32768.0, chunk.sample_rate)
            while sd.get_stream().active and not stop_playing.is_set():
                stop_playing.wait(0.03)
            sd.stop()

    worker, player = threading.Thread(target=work, daemon=True), threading.Thread(target=play, daemon=True)
    worker.start()
    player.start()
    detector.reset()
    while player.is_alive():
        try:
            block = mic.get(timeout=0.05)
        except queue.Empty:
            continue
        if any(e.kind == "speech_start" for e in detector.feed(block)):
            pipeline.cancel()
            stop_playing.set()
    worker.join()
    if not stop_playing.is_set():
        detector.reset()

