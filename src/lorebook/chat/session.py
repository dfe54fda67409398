"""A chat session: persona + engine + conversation + log. The CLI and the server both drive this.

`ChatSession.reply(text)` streams the assistant's answer while fitting the context and logging each
message as soon as it exists. Engines are cached per (model, adapters, engine) so the server keeps
models loaded and shares them between requests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from lorebook.chat import store
from lorebook.chat.conversation import Conversation
from lorebook.chat.persona import Persona, load_persona
from lorebook.models.engine import Engine, GenerationOptions, load_engine

_engines: dict[tuple, Engine] = {}
_engines_lock = threading.Lock()


def get_engine(model: str | None, adapters: list[str], engine: str = "torch") -> Engine:
    """A loaded engine, shared by everyone asking for the same model, adapters and engine."""
    key = (model, tuple(adapters), engine)
    with _engines_lock:
        if key not in _engines:
            _engines[key] = load_engine(model, adapters, engine)
        return _engines[key]


def resolve_setup(
    persona: str | None = None,
    model: str | None = None,
    adapters: list[str] | None = None,
    option_pairs: list[str] | None = None,
    system: str | None = None,
) -> tuple[Persona, str | None, list[str], GenerationOptions]:
    """Combine a persona with command-line overrides: (persona, model, adapters, options)."""
    chosen = load_persona(persona or "assistant")
    model = model or chosen.model
    all_adapters = list(chosen.adapters) + list(adapters or [])
    options = GenerationOptions.parse_pairs(option_pairs or [], base=chosen.options)
    if system is not None:
        chosen.system = system
    return chosen, model, all_adapters, options


class ChatSession:
    """One ongoing conversation with a model, logged to SQLite."""

    def __init__(self, engine: Engine, persona: Persona, options: GenerationOptions, log: bool = True,
                 persona_name: str | None = None, adapters: list[str] | None = None, notebook: str | None = None):
        self.engine = engine
        self.persona = persona
        self.options = options
        self.conversation = Conversation(system=persona.system)
        self.dropped_turns = 0
        self.db = store.connect() if log else None
        self._persona_name = persona_name
        self._adapters = adapters or []
        self.log = self._new_log()
        self.retriever = None  # the persona's (or the caller's) notebook, consulted on every user turn
        if persona.moments is not None:  # read and embed the examples now: a bad file fails here, not mid-chat
            from lorebook.chat.moments import picker_for

            picker_for(persona.moments)
        self.last_notes: list = []
        if notebook or persona.notebook:
            from lorebook.notebook.scope import Retriever
            from lorebook.notebook.store import Notebook

            self.retriever = Retriever(Notebook.open(notebook or persona.notebook), count_tokens=engine.count_tokens)

    def _new_log(self):
        if self.db is None:
            return None
        return store.ConversationLog(self.db, self.engine.model_name, self.engine.name, self._persona_name,
                                     self._adapters)

    def set_system(self, text: str) -> None:
        self.conversation.system = text
        if self.log:
            self.log.add("system", text)

    def reset(self) -> None:
        """Forget the turns (keep the system prompt) and start a new log entry."""
        self.conversation.reset()
        self.log = self._new_log()

    def reply(self, text: str) -> Iterator[str]:
        """Stream the reply to a user message (with the persona's moments: the picked candidate, in one piece);
        `self.dropped_turns` says how much history was cut to fit."""
        if self.log and not self.conversation.turns and self.conversation.system:
            self.log.add("system", self.conversation.system)
        self.conversation.add("user", text)
        if self.log:
            self.log.add("user", text)
        reserve = self.options.max_tokens + (self.retriever.config.token_budget if self.retriever else 0)
        self.dropped_turns = self.conversation.fit(self.engine, reserve)
        messages = self.conversation.messages()
        if self.retriever is not None:  # notes go into this turn's prompt only, never into the history
            messages, self.last_notes = self.retriever.augment(messages)
        started = time.perf_counter()
        if self.persona.moments is not None:  # candidates are compared whole: the picked one comes in one piece
            from lorebook.chat.moments import picked_replies

            [answer] = picked_replies(self.engine, [messages], self.options, self.persona.moments)
            yield answer
            counts = (None, self.engine.count_tokens(answer))
        else:
            pieces: list[str] = []
            for piece in self.engine.stream(messages, self.options):
                pieces.append(piece)
                yield piece
            answer = "".join(pieces).strip()
            counts = (self.engine.last.prompt_tokens, self.engine.last.completion_tokens)
        self.conversation.add("assistant", answer)
        if self.log:
            self.log.add("assistant", answer, *counts, time.perf_counter() - started)
