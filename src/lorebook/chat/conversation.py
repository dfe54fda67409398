"""A conversation: system prompt plus turns, fitted into the model's context window.

Small local models have small contexts (SmolLM2: 8k, we run with 4k). When the history no longer
fits beside the reply budget we drop the oldest turns (never the system prompt or the newest user
message) and report how many went, so the CLI can say so instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lorebook.errors import InputError
from lorebook.models.engine import Engine, Message


@dataclass
class Conversation:
    """The messages of one chat, with the system prompt kept apart so /reset and /system are simple."""

    system: str = ""
    turns: list[Message] = field(default_factory=list)

    def messages(self) -> list[Message]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns

    def add(self, role: str, content: str) -> None:
        self.turns.append({"role": role, "content": content})

    def reset(self) -> None:
        self.turns.clear()

    def fit(self, engine: Engine, reply_tokens: int) -> int:
        """Drop the oldest turns until the prompt plus `reply_tokens` fits; returns how many were dropped."""
        dropped = 0
        budget = engine.context_length - reply_tokens
        while engine.count_tokens(engine.render(self.messages())) > budget:
            if len(self.turns) <= 1:
                used = engine.count_tokens(engine.render(self.messages()))
                raise InputError(
                    f"the message needs {used} tokens but the context holds {budget} beside the reply",
                    "shorten the message, or lower max_tokens with -o max_tokens=N",
                )
            self.turns.pop(0)
            dropped += 1
            # Keep the history starting with a user turn, as chat templates expect.
            while self.turns and self.turns[0]["role"] != "user" and len(self.turns) > 1:
                self.turns.pop(0)
                dropped += 1
        return dropped
