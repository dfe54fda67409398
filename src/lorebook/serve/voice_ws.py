"""`/api/voice`: live voice turns over one WebSocket per conversation.

Client → server: JSON `{"type": "start", "persona": NAME, "mode": "vad"|"ptt"}` first; then binary frames
of 16 kHz mono 16-bit PCM; `{"type": "end"}` ends a push-to-talk utterance; `{"type": "text", "text": …}`
is a typed turn answered aloud; `{"type": "cancel"}` stops the reply (barge-in from a button).

Server → client: `ready`; `speech_start` (the user started talking: stop playback, the reply in progress
is cancelled); `transcript`; `text` deltas; for each spoken sentence an `audio` JSON header (sample rate,
text, Rhubarb mouth cues relative to the chunk) followed by one binary frame of 16-bit PCM; `done` with
the reply, timings and the id under which the whole spoken reply and its cue track are stored
(`/api/speech/{id}/cues`); `error` with a one-line message.

The turn itself is `voice.pipeline.VoicePipeline`, the same object behind `lorebook talk`; its chat
session generates through the server's fair scheduler, so voice turns and API chats share the model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from lorebook.errors import LorebookError
from lorebook.voice.lipsync import cues_for_chunk

router = APIRouter()
_warm = threading.Event()
MAX_UTTERANCE_SECONDS = 60


def build_pipeline(state, persona: str | None, client: str, temperature: float | None = None):
    """A VoicePipeline whose chat session generates through the shared scheduler (at `temperature`, when
    given, instead of the persona's)."""
    from lorebook.chat.session import ChatSession
    from lorebook.serve.chat import load_target_engine, resolve_target
    from lorebook.serve.scheduler import ScheduledEngine
    from lorebook.voice.pipeline import VoicePipeline
    from lorebook.voice.stt import SttConfig, Transcriber

    target = resolve_target(persona, state.config.persona)
    engine = ScheduledEngine(load_target_engine(target, state.config.engine), state.scheduler, client,
                             state.config.request_timeout_s)
    options = target.persona.options.updated(max_tokens=min(target.persona.options.max_tokens, state.config.max_tokens),
                                             temperature=temperature)
    session = ChatSession(engine, target.persona, options, persona_name=target.persona.name, adapters=target.adapters)
    transcriber = Transcriber(SttConfig(language=target.persona.language))
    speaker = state.speaker(None, target.persona.name if target.label == target.persona.name else None)
    pipeline = VoicePipeline(session.reply, transcriber, speaker, session=session)
    if not _warm.is_set():  # first ONNX/CTranslate2 runs are slow; pay that once per process
        pipeline.warm_up()
        _warm.set()
    return pipeline


class VoiceConnection:
    """One socket: feeds audio to the end-of-utterance detector and runs turns in worker threads."""

    def __init__(self, socket: WebSocket, state):
        self.socket, self.state = socket, state
        self.loop = asyncio.get_running_loop()
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.pipeline = None
        self.detector = None
        self.mode = "vad"
        self.held: list[np.ndarray] = []  # push-to-talk audio
        self.turn: Future | None = None
        # One thread per conversation builds the pipeline and runs its turns in order: the chat
        # session's SQLite connection may only be used by the thread that opened it.
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="voice-turn")

    def emit(self, message) -> None:
        """Thread-safe: queue a JSON message (dict) or a binary frame (bytes) for the client."""
        self.loop.call_soon_threadsafe(self.outbox.put_nowait, message)

    async def sender(self) -> None:
        while True:
            message = await self.outbox.get()
            if isinstance(message, bytes):
                await self.socket.send_bytes(message)
            else:
                await self.socket.send_json(message)

    async def start(self, message: dict) -> None:
        self.mode = "ptt" if message.get("mode") == "ptt" else "vad"
        client = f"voice-{id(self)}"
        temperature = message.get("temperature")
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
            temperature = None
        self.pipeline = await self.loop.run_in_executor(self.worker, build_pipeline, self.state,
                                                        message.get("persona"), client,
                                                        None if temperature is None else float(temperature))
        self.detector = self.pipeline.detector()
        self.emit({"type": "ready", "persona": self.pipeline.session.persona.name, "mode": self.mode})

    def feed(self, pcm: bytes) -> None:
        """Audio from the microphone (runs in a worker thread: Silero VAD costs ~0.1 ms per frame)."""
        audio = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
        if self.mode == "ptt":
            if sum(a.size for a in self.held) < MAX_UTTERANCE_SECONDS * 16000:
                self.held.append(audio)
            return
        for event in self.detector.feed(audio):
            if event.kind == "speech_start":
                if self.turn is not None and not self.turn.done():
                    self.pipeline.cancel()  # barge-in: the user talks over the reply
                self.emit({"type": "speech_start"})
            elif event.kind == "pause":
                self.pipeline.speculate(event)
            elif event.kind == "utterance":
                self.begin(lambda e=event: self.pipeline.respond(e.audio, e.time))

    def begin(self, make_events) -> None:
        """Start a turn; one still running is cancelled first (it ends at its next token or sentence)."""
        if self.turn is not None and not self.turn.done():
            self.pipeline.cancel()
        self.turn = self.worker.submit(self._turn, make_events)

    def _turn(self, make_events) -> None:
        chunks = []
        try:
            for event in make_events():
                if event.kind == "transcript":
                    self.emit({"type": "transcript", "text": event.transcript.text,
                               "language": event.transcript.language})
                elif event.kind == "text":
                    self.emit({"type": "text", "text": event.text})
                elif event.kind == "audio":
                    chunk = event.chunk
                    chunks.append(chunk)
                    self.emit({"type": "audio", "index": event.index, "sample_rate": chunk.sample_rate,
                               "text": chunk.text, "duration": round(chunk.duration, 3),
                               "cues": [c.as_json() for c in cues_for_chunk(chunk)]})
                    self.emit(chunk.pcm)
                elif event.kind == "done":
                    speech_id = self.state.speech.save_chunks(chunks)[0] if chunks else None
                    self.emit({"type": "done", "reply": event.reply, "interrupted": event.interrupted,
                               "speech_id": speech_id, "timings": dataclasses.asdict(event.timings)})
        except LorebookError as exc:
            self.emit({"type": "error", "message": exc.one_line()})
        except Exception as exc:  # noqa: BLE001 (one failed turn must not end the conversation)
            self.emit({"type": "error", "message": f"{type(exc).__name__}: {exc}"})

    async def handle(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "start":
            await self.start(message)
        elif self.pipeline is None:
            self.emit({"type": "error", "message": "send {\"type\": \"start\"} first"})
        elif kind == "text" and isinstance(message.get("text"), str) and message["text"].strip():
            self.begin(lambda text=message["text"]: self.pipeline.respond_text(text))
        elif kind == "end" and self.held:
            audio, self.held = np.concatenate(self.held), []
            self.begin(lambda: self.pipeline.respond(audio))
        elif kind == "cancel":
            self.pipeline.cancel()


@router.websocket("/api/voice")
async def voice(socket: WebSocket) -> None:
    await socket.accept()
    connection = VoiceConnection(socket, socket.app.state.lorebook)
    sender = asyncio.create_task(connection.sender())
    try:
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("bytes") is not None:
                if connection.pipeline is not None:
                    await asyncio.to_thread(connection.feed, message["bytes"])
            elif message.get("text") is not None:
                import json

                try:
                    await connection.handle(json.loads(message["text"]))
                except LorebookError as exc:
                    connection.emit({"type": "error", "message": exc.one_line()})
                except (ValueError, AttributeError):
                    connection.emit({"type": "error", "message": "messages must be JSON objects"})
    except WebSocketDisconnect:
        pass
    finally:
        if connection.pipeline is not None:
            connection.pipeline.cancel()
        connection.worker.shutdown(wait=False, cancel_futures=True)
        await asyncio.sleep(0.05)  # let queued messages go out before the socket closes
        sender.cancel()
