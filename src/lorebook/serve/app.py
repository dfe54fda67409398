"""create_app: one FastAPI app with the OpenAI routes, the speech/voice/job routes and the web page.

Security lives here, in front of every route: an ASGI guard checks the API key on HTTP *and* WebSocket
requests (header `Authorization: Bearer KEY`, `?key=KEY`, or the HttpOnly cookie set when the page is
opened with `?key=`), and refuses request bodies above the size limit even when they arrive without a
Content-Length. CORS is off unless origins are configured. Errors become OpenAI-shaped JSON with the
same one-line problem-and-fix text the CLI prints.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, Response

from lorebook import paths
from lorebook.errors import AdapterError, InputError, LorebookError, ModelError, PersonaError
from lorebook.serve.config import ServeConfig
from lorebook.serve.openai_api import error_response
from lorebook.serve.openai_api import router as openai_router
from lorebook.serve.scheduler import QueueFull, Scheduler
from lorebook.serve.speech import SpeechStore

STATIC = Path(str(resources.files("lorebook") / "serve" / "static"))
COOKIE = "lorebook_key"


class ServerState:
    """What every route shares: settings, the scheduler, stored speech, jobs, and the voice services."""

    def __init__(self, config: ServeConfig):
        from lorebook.serve.jobs import JobManager

        self.config = config
        self.scheduler = Scheduler(config.slots, config.queue_limit)
        self.speech = SpeechStore()
        self.jobs = JobManager()
        self.uploads = paths.subdir("serve") / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)

    async def read_upload(self, upload, max_seconds: float = 600.0) -> np.ndarray:
        """An uploaded audio file decoded to 16 kHz mono; the bytes touch disk only inside the data dir."""
        from lorebook.voice.audio import load_audio

        limit = int(self.config.max_body_mb * 1024 * 1024)
        suffix = Path(upload.filename or "audio").suffix.lower()
        suffix = suffix if suffix.isascii() and suffix[1:].isalnum() and len(suffix) <= 6 else ".bin"
        with tempfile.NamedTemporaryFile(dir=self.uploads, suffix=suffix, delete=True) as handle:
            size = 0
            while block := await upload.read(1 << 20):
                size += len(block)
                if size > limit:
                    raise InputError(f"the upload is larger than {self.config.max_body_mb:g} MB",
                                     "send a shorter recording")
                handle.write(block)
            handle.flush()
            return load_audio(handle.name, max_seconds=max_seconds)

    def transcribe(self, audio: np.ndarray, model: str | None = None, language: str | None = None):
        from lorebook.voice.stt import SttConfig, Transcriber

        whisper = model if model in ("tiny.en", "base") else None  # "whisper-1" and others: pick by language
        return Transcriber(SttConfig(model=whisper, language=language or None)).transcribe(audio)

    def speaker(self, voice: str | None = None, persona: str | None = None):
        from lorebook.chat.persona import load_persona
        from lorebook.serve.chat import _NAME
        from lorebook.voice.tts import load_speaker

        if voice and (voice.endswith(".onnx") or not _NAME.match(voice.replace("espeak:", ""))):
            raise InputError(f"voice {voice!r} is not a voice name", "use en_US-joe-medium, espeak:es or es")
        chosen = load_persona(persona if persona and _NAME.match(persona) else self.config.persona)
        return load_speaker(voice or chosen.voice, chosen.language)

    def synthesize(self, text: str, voice: str | None = None, persona: str | None = None):
        """Speak text, store it with its mouth cues; returns (speech id, int16 samples, sample rate)."""
        speaker = self.speaker(voice, persona if persona not in ("tts-1", "tts-1-hd", "gpt-4o-mini-tts") else None)
        samples, chunks = speaker.say(text)
        speech_id, _ = self.speech.save_chunks(chunks, text)
        return speech_id, samples, speaker.sample_rate


class Guard:
    """ASGI middleware: API key on every HTTP and WebSocket request; request body size limit."""

    def __init__(self, app, api_key: str | None, max_body: int):
        self.app, self.api_key, self.max_body = app, api_key, max_body

    def _authorized(self, scope) -> tuple[bool, bool]:
        """(allowed, key came in the query string: set the cookie)."""
        if not self.api_key:
            return True, False
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        offered = []
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            offered.append(auth[7:].strip())
        from http.cookies import SimpleCookie
        from urllib.parse import parse_qs

        cookie = SimpleCookie(headers.get("cookie", ""))
        if COOKIE in cookie:
            offered.append(cookie[COOKIE].value)
        query_key = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("key", [None])[0]
        if any(secrets.compare_digest(k.encode(), self.api_key.encode()) for k in offered):
            return True, False
        if query_key and secrets.compare_digest(query_key.encode(), self.api_key.encode()):
            return True, True
        return False, False

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        allowed, from_query = self._authorized(scope)
        if not allowed:
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 4401})
            return await error_response(401, "missing or wrong API key (fix: send 'Authorization: Bearer KEY')",
                                        "authentication_error")(scope, receive, send)
        if scope["type"] == "http":
            headers = dict(scope.get("headers", []))
            declared = headers.get(b"content-length")
            if declared and declared.isdigit() and int(declared) > self.max_body:
                return await error_response(413, f"request body over {self.max_body // 1048576} MB "
                                            "(fix: send a smaller file)", "invalid_request_error")(scope, receive, send)
            receive = self._counting(receive)
            if from_query:
                send = self._with_cookie(send)
        return await self.app(scope, receive, send)

    def _counting(self, receive):
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise InputError("request body too large", "send a smaller file")
            return message

        return counted

    def _with_cookie(self, send):
        async def sending(message):
            if message["type"] == "http.response.start":
                cookie = f"{COOKIE}={self.api_key}; HttpOnly; SameSite=Strict; Path=/"
                message["headers"] = list(message.get("headers", [])) + [(b"set-cookie", cookie.encode())]
            await send(message)

        return sending


def create_app(config: ServeConfig | None = None) -> FastAPI:
    """The whole server; `app.state.lorebook` holds the shared ServerState."""
    from lorebook.serve.jobs import router as jobs_router
    from lorebook.serve.voice_ws import router as voice_router

    config = config or ServeConfig()
    state = ServerState(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        state.scheduler.stop()

    app = FastAPI(title="lorebook", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.lorebook = state
    app.include_router(openai_router)
    app.include_router(voice_router)
    app.include_router(jobs_router)
    _add_page_routes(app)
    _add_error_handlers(app)
    if config.origins():
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=config.origins(), allow_methods=["*"],
                           allow_headers=["*"])
    app.add_middleware(Guard, api_key=config.api_key, max_body=int(config.max_body_mb * 1024 * 1024))
    return app


def _add_page_routes(app: FastAPI) -> None:
    pages = {"/": "index.html", "/teach": "teach.html", "/eval": "eval.html"}
    for route, name in pages.items():
        def page(name: str = name) -> HTMLResponse:
            return HTMLResponse((STATIC / name).read_text(encoding="utf-8"))

        app.get(route, include_in_schema=False)(page)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        found = {p.name: p for p in STATIC.iterdir()}.get(name)  # only files that ship with the page
        if found is None:
            raise FileNotFoundError(name)
        return FileResponse(found)

    @app.get("/api/health")
    def health(request: Request) -> dict:
        return {"status": "ok", **request.app.state.lorebook.scheduler.stats()}

    @app.get("/api/personas")
    def personas() -> list[dict]:
        from lorebook.chat.persona import list_personas

        return [{"name": p.name, "description": p.description, "language": p.language, "voice": p.voice}
                for p in list_personas()]

    @app.get("/api/speech/{speech_id}/cues")
    def speech_cues(request: Request, speech_id: str) -> dict:
        return request.app.state.lorebook.speech.cues(speech_id)

    @app.get("/api/speech/{speech_id}.wav")
    def speech_audio(request: Request, speech_id: str) -> FileResponse:
        return FileResponse(request.app.state.lorebook.speech.path(speech_id, ".wav"), media_type="audio/wav")


def _add_error_handlers(app: FastAPI) -> None:
    statuses = ((QueueFull, 429), (ModelError, 404), (PersonaError, 404), (AdapterError, 404), (LorebookError, 400))

    @app.exception_handler(LorebookError)
    async def lorebook_error(request: Request, exc: LorebookError) -> Response:
        status = next(code for kind, code in statuses if isinstance(exc, kind))
        return error_response(status, exc.one_line(), "invalid_request_error" if status == 400 else type(exc).__name__)

    @app.exception_handler(FileNotFoundError)
    async def not_found(request: Request, exc: FileNotFoundError) -> Response:
        return error_response(404, f"not found: {exc.args[0] if exc.args else request.url.path}", "not_found")

    @app.exception_handler(TimeoutError)
    async def timed_out(request: Request, exc: TimeoutError) -> Response:
        return error_response(504, str(exc), "timeout")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return error_response(400, f"invalid request: {problems}", "invalid_request_error")

    @app.exception_handler(json.JSONDecodeError)
    async def bad_json(request: Request, exc: json.JSONDecodeError) -> Response:
        return error_response(400, f"the body is not valid JSON ({exc.msg}) (fix: send JSON)", "invalid_request_error")
