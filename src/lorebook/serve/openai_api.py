"""OpenAI-compatible routes, thin over the chat, STT and TTS services; the official `openai` client works.

Chat replies come from the shared scheduler (see scheduler.py); speech-to-text and text-to-speech run
in worker threads so the event loop keeps serving other requests. Uploads are written only under the
data dir (`serve/uploads/`, random names) and deleted as soon as they are decoded.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from lorebook.errors import InputError
from lorebook.models.engine import Completion
from lorebook.serve.chat import build_messages, build_options, load_target_engine, model_cards, resolve_target
from lorebook.serve.scheduler import ScheduledEngine, Ticket
from lorebook.serve.speech import FORMATS, encode

router = APIRouter()
OPENAI_VOICES = {"alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse"}


@router.get("/v1/models")
async def models() -> dict:
    return {"object": "list", "data": await asyncio.to_thread(model_cards)}


def client_id(request: Request) -> str:
    """Who is asking, for the fair queue: the page's session header, else the peer address."""
    return request.headers.get("x-lorebook-client") or (request.client.host if request.client else "anonymous")


async def start_chat(request: Request, body: dict) -> tuple[Ticket | PickedReply, str]:
    """Resolve, load and queue one chat request; returns the ticket (or, for a persona with moments, the picked
    reply) and the label to echo back."""
    state = request.app.state.lorebook
    target = await asyncio.to_thread(resolve_target, body.get("model"), state.config.persona)
    messages = build_messages(target, body.get("messages") or [])
    options = build_options(target, body, state.config.max_tokens)
    engine = await asyncio.to_thread(load_target_engine, target, state.config.engine)
    if target.persona.moments is not None:
        scheduled = ScheduledEngine(engine, state.scheduler, client_id(request), state.config.request_timeout_s)
        picked = await asyncio.to_thread(PickedReply.pick, scheduled, messages, options, target.persona.moments)
        return picked, target.label
    ticket = Ticket(engine, messages, options, client_id(request),
                    time.perf_counter() + state.config.request_timeout_s, asyncio.get_running_loop())
    state.scheduler.submit(ticket)
    return ticket, target.label


class PickedReply:
    """What a persona with `moments:` answers, in the shape of a finished Ticket: its candidates go through the
    scheduler like any request, and the picked one is sent whole (one chunk when streaming)."""

    def __init__(self, completion: Completion):
        self.completion = completion

    @classmethod
    def pick(cls, engine: ScheduledEngine, messages, options, moments) -> PickedReply:
        from lorebook.chat.moments import picked_replies

        [text] = picked_replies(engine, [messages], options, moments)
        prompt_tokens = engine.count_tokens(engine.render(messages))
        return cls(Completion(text, prompt_tokens, engine.count_tokens(text), "stop"))

    async def pieces(self):
        yield self.completion.text


@router.post("/v1/chat/completions")
async def chat_completions(request: Request):
    body = await request.json()
    if not isinstance(body, dict):
        raise InputError("the request body must be a JSON object", "send {\"model\": ..., \"messages\": [...]}")
    ticket, label = await start_chat(request, body)
    completion_id = f"chatcmpl-{secrets.token_hex(8)}"
    created = int(time.time())
    if not body.get("stream"):
        text = "".join([piece async for piece in ticket.pieces()])
        done = ticket.completion
        return {"id": completion_id, "object": "chat.completion", "created": created, "model": label,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": done.finish_reason if done else "stop"}],
                "usage": _usage(done)}
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict, finish: str | None = None) -> str:
        return "data: " + json.dumps({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                                      "model": label, "choices": [{"index": 0, "delta": delta,
                                                                   "finish_reason": finish}]}) + "\n\n"

    async def events():
        yield chunk({"role": "assistant", "content": ""})
        try:
            async for piece in ticket.pieces():
                yield chunk({"content": piece})
        except Exception as exc:  # noqa: BLE001 (headers are sent: report the error inside the stream)
            yield "data: " + json.dumps({"error": {"message": str(exc), "type": type(exc).__name__}}) + "\n\n"
            return
        done = ticket.completion
        yield chunk({}, done.finish_reason if done else "stop")
        if include_usage:
            yield "data: " + json.dumps({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                                         "model": label, "choices": [], "usage": _usage(done)}) + "\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _usage(done) -> dict:
    prompt, completion = (done.prompt_tokens, done.completion_tokens) if done else (0, 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@router.post("/v1/audio/transcriptions")
async def transcriptions(request: Request, file: UploadFile = File(...), model: str = Form("whisper-1"),
                         language: str | None = Form(None), response_format: str = Form("json")):
    state = request.app.state.lorebook
    if response_format not in ("json", "text", "verbose_json"):
        raise InputError(f"response_format {response_format!r} is not supported", "use json, text or verbose_json")
    audio = await state.read_upload(file)
    transcript = await asyncio.to_thread(state.transcribe, audio, model, language)
    if response_format == "text":
        return PlainTextResponse(transcript.text)
    if response_format == "json":
        return {"text": transcript.text}
    return {"task": "transcribe", "language": transcript.language, "duration": transcript.duration,
            "text": transcript.text, "segments": [{"id": i, "start": s.start, "end": s.end, "text": s.text}
                                                  for i, s in enumerate(transcript.segments)]}


@router.post("/v1/audio/speech")
async def speech(request: Request):
    state = request.app.state.lorebook
    body = await request.json()
    text = body.get("input") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise InputError("input must be non-empty text", "send {\"input\": \"Hello\", \"voice\": \"alloy\"}")
    if len(text) > 4096:
        raise InputError(f"input is {len(text)} characters long", "send at most 4096 characters per request")
    fmt = body.get("response_format") or "mp3"
    if fmt not in FORMATS:
        raise InputError(f"response_format {fmt!r} is not supported", f"use one of: {', '.join(FORMATS)}")
    voice = body.get("voice")
    voice = None if voice in OPENAI_VOICES or not isinstance(voice, str) else voice
    speech_id, samples, rate = await asyncio.to_thread(state.synthesize, text, voice, body.get("model"))
    audio = await asyncio.to_thread(encode, samples, rate, fmt)
    return Response(audio, media_type=FORMATS[fmt], headers={"X-Speech-Id": speech_id,
                                                            "X-Speech-Cues": f"/api/speech/{speech_id}/cues"})


def error_response(status: int, message: str, kind: str) -> JSONResponse:
    """OpenAI's error shape, which its client turns into a typed exception."""
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)
