"""What a chat request means: the `model` string, the persona's system prompt and sampling options.

`model` may name a persona (`assistant`), a model (`smollm2-135m`) or either with adapters
(`smollm2-135m+oscars`, `assistant+oscars:0.7+style`). Only names are accepted over HTTP, never file
paths: a remote caller must not make the server open files of its choosing. Engines are loaded once
per (model, adapters, engine) through `chat.session.get_engine` and shared by every request.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from lorebook.chat.persona import Persona, list_personas, load_persona
from lorebook.errors import InputError, LorebookError
from lorebook.models.engine import Engine, GenerationOptions, Message
from lorebook.models.registry import list_models, resolve_model

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(:[0-9.]+)?$")
_load_lock = threading.Lock()  # loading two models at once would only double the wait on 2 cores


@dataclass
class Target:
    """A resolved `model` string."""

    label: str  # what the client asked for, echoed back in responses
    persona: Persona
    model: str | None
    adapters: list[str]


def resolve_target(requested: str | None, default_persona: str) -> Target:
    """Persona, model and adapters for a request's `model` field (names only; paths are refused)."""
    label = (requested or default_persona).strip()
    parts = [p.strip() for p in label.split("+")]
    for part in parts:
        if not _NAME.match(part):
            raise InputError(f"model {label!r} is not a name", "use a persona or model name from GET /v1/models, "
                             "optionally +adapter names")
    head, adapters = parts[0], parts[1:]
    personas = {p.name for p in list_personas()}
    if head in personas:
        persona = load_persona(head)
        return Target(label, persona, persona.model, list(persona.adapters) + adapters)
    spec = resolve_model(head)  # unknown names raise ModelError with the list of known ones
    persona = load_persona(default_persona)
    persona.system = ""  # a bare model gets no persona prompt: the client's messages say everything
    return Target(label, persona, spec.name, adapters)


def load_target_engine(target: Target, engine: str) -> Engine:
    """The shared engine for a target (loaded on first use; later requests reuse it)."""
    from lorebook.chat.session import get_engine

    with _load_lock:
        return get_engine(target.model, target.adapters, engine)


def build_messages(target: Target, messages: list[dict]) -> list[Message]:
    """Validated chat messages, with the persona's system prompt first when the client sent none."""
    if not messages:
        raise InputError("messages is empty", "send at least one {'role': 'user', 'content': ...} message")
    cleaned: list[Message] = []
    for index, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role not in ("system", "user", "assistant"):
            raise InputError(f"messages[{index}] has role {role!r}", "use system, user or assistant")
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not isinstance(content, str):
            raise InputError(f"messages[{index}].content must be text", "send a string")
        cleaned.append({"role": role, "content": content})
    if cleaned[0]["role"] != "system" and target.persona.system:
        cleaned.insert(0, {"role": "system", "content": target.persona.system})
    return cleaned


def build_options(target: Target, body: dict, max_tokens_limit: int) -> GenerationOptions:
    """The persona's options overridden by the request's OpenAI fields, capped by the server's limit."""
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    requested = body.get("max_completion_tokens") or body.get("max_tokens")
    if requested is not None and (not isinstance(requested, int) or requested < 1):
        raise InputError("max_tokens must be a positive integer", "e.g. \"max_tokens\": 128")
    options = target.persona.options.updated(
        temperature=_number(body, "temperature", 0.0, 2.0), top_p=_number(body, "top_p", 0.0, 1.0),
        seed=body.get("seed") if isinstance(body.get("seed"), int) else None,
        stop=stop if isinstance(stop, list) else None, max_tokens=requested)
    return options.updated(max_tokens=min(options.max_tokens, max_tokens_limit))


def _number(body: dict, key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or not low <= value <= high:
        raise InputError(f"{key} must be a number from {low} to {high}", f"e.g. \"{key}\": {high / 2}")
    return float(value)


def model_cards() -> list[dict]:
    """Everything a client may put in `model`: personas, models, and each adapter on its base model."""
    from lorebook.teach.store import list_adapters

    cards = [{"id": p.name, "object": "model", "owned_by": "persona", "description": p.description}
             for p in list_personas()]
    cards += [{"id": s.name, "object": "model", "owned_by": "lorebook", "description": s.description}
              for s in list_models()]
    try:
        adapters = list_adapters()
    except LorebookError:
        adapters = []
    for meta in adapters:
        base = meta.get("base_model") or ""
        base_name = base if _NAME.match(str(base)) else "smollm2-135m"
        cards.append({"id": f"{base_name}+{meta['name']}", "object": "model", "owned_by": "adapter",
                      "description": f"LoRA adapter {meta['name']} on {base_name}"})
    for card in cards:
        card["created"] = 0
    return cards
