"""`lorebook serve`: an OpenAI-compatible HTTP API, a voice WebSocket and a web page, in one process.

    config.py     ServeConfig: every server option (its field help drives the CLI flags)
    scheduler.py  shared engines, per-request KV-cache slots and the fair token-by-token scheduler
    chat.py       what a chat-completion request means: `model` → persona/model/adapters, options
    openai_api.py /v1/models, /v1/chat/completions (SSE), /v1/audio/transcriptions, /v1/audio/speech
    speech.py     synthesized speech kept in the data dir with its Rhubarb mouth cues (/api/speech/…)
    voice_ws.py   /api/voice: live voice turns over a WebSocket (audio in; text, audio, cues out)
    jobs.py       teach / eval / sweep runs as child processes with streamed progress (/api/jobs)
    app.py        create_app: security (bind, API key, CORS, size limits), routes, static pages
    static/       the web page: chat, voice, talking face, teach and eval pages (plain HTML/JS)
"""
