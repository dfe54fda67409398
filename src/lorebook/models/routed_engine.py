"""An engine that sends each request to the taught or the base weights, by the adapters' scope.

Why: a LoRA adapter merged into a small model changes answers it was never meant to touch. When the
loaded adapters carry a scope (`teach/scope.py`), the engine keeps two copies of the model, one with
the adapters merged and one without, and asks the scope about each request's last user message: in
scope goes to the taught copy, anything else to the base copy, whose answer is then exactly what the
untaught model says. Both copies decode at full speed; the check is one MiniLM embedding (~5 ms).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from lorebook.models.engine import Completion, Engine, GenerationOptions, Message, last_user_text


def adapter_scopes(adapters: list[str]) -> dict:
    """{adapter name: its enabled scope} for the adapters (NAME or NAME:WEIGHT) that have one."""
    from lorebook.models.loader import resolve_adapter, split_weight
    from lorebook.teach.scope import AdapterScope

    found = {}
    for entry in adapters:
        name = split_weight(entry)[0]
        scope = AdapterScope.load(Path(resolve_adapter(name)))
        if scope is not None and scope.enabled:
            found[entry] = scope
    return found


def scope_fingerprint(adapters: list[str]) -> list[dict]:
    """What a stored run must remember about routing: each scoped adapter's threshold ([] when none)."""
    scopes = adapter_scopes(adapters)
    return [{name: scope.threshold for name, scope in scopes.items()}] if scopes else []


def merged_scope(scopes: list):
    """One scope covering several adapters' scopes: a query in any of them goes to the taught copy."""
    from lorebook.teach.scope import AdapterScope

    if len(scopes) == 1:
        return scopes[0]
    texts = [text for scope in scopes for text in scope.texts]
    # Each adapter's threshold was calibrated for its own texts; the strictest keeps every one honest.
    return AdapterScope(texts=texts, threshold=max(scope.threshold for scope in scopes))


class RoutedEngine(Engine):
    """Taught and base engines behind one Engine; `routes` counts where requests went."""

    def __init__(self, base: Engine, taught: Engine, scope):
        self.base, self.taught, self.scope = base, taught, scope
        self.name = taught.name
        self.model_name = taught.model_name
        self.context_length = min(base.context_length, taught.context_length)
        self.routes = {"taught": 0, "base": 0}
        self.last = Completion("", 0, 0, "stop")

    def count_tokens(self, text: str) -> int:
        return self.taught.count_tokens(text)

    def render(self, messages: list[Message], add_generation_prompt: bool = True) -> str:
        return self.taught.render(messages, add_generation_prompt)

    def pick(self, query: str) -> Engine:
        """The engine for a request whose last user message is `query`."""
        taught = self.scope.covers([query])[0]
        self.routes["taught" if taught else "base"] += 1
        return self.taught if taught else self.base

    def stream_prompt(self, prompt: str, options: GenerationOptions) -> Iterator[str]:
        engine = self.pick(prompt)  # a raw prompt has no turns: the whole text is the query
        yield from engine.stream_prompt(prompt, options)
        self.last = engine.last

    def stream(self, messages: list[Message], options: GenerationOptions | None = None) -> Iterator[str]:
        engine = self.pick(last_user_text(messages))
        yield from engine.stream(messages, options)
        self.last = engine.last

    def chat(self, messages: list[Message], options: GenerationOptions | None = None) -> Completion:
        engine = self.pick(last_user_text(messages))
        completion = engine.chat(messages, options)
        self.last = engine.last
        return completion

    def chat_batch(self, conversations: list[list[Message]], options: GenerationOptions | None = None) -> list[str]:
        covered = self.scope.covers([last_user_text(messages) for messages in conversations])
        replies: list[str] = [""] * len(conversations)
        for engine, wanted in ((self.taught, True), (self.base, False)):
            indices = [i for i, c in enumerate(covered) if c == wanted]
            self.routes["taught" if wanted else "base"] += len(indices)
            if indices:
                for i, reply in zip(indices, engine.chat_batch([conversations[i] for i in indices], options)):
                    replies[i] = reply
        return replies

    def with_engines(self, base: Engine, taught: Engine) -> RoutedEngine:
        """The same routing over other copies of the two engines (the server's per-stream slots)."""
        return RoutedEngine(base, taught, self.scope)
