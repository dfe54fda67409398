"""A fake synth teacher and small helpers shared by the synth generator tests."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from lorebook.synth.scenario import load_scenario

EXAMPLE = Path(__file__).parent.parent / "examples" / "customs-checkpoint-es.yaml"
AGENT_LINES = ["¿Cuál es el motivo de su viaje a España, señor {i}?", "¿Cuántos días se va a quedar usted en {i}?",
               "¿Lleva usted algo que declarar en la maleta número {i}?", "Muy bien, puede pasar. Bienvenido a España."]


@functools.cache
def few_shot_count(side: str) -> int:
    return len(getattr(load_scenario(EXAMPLE), side).examples)


def own_turn_count(messages: list[dict]) -> int:
    """The speaker's turns so far: its assistant messages minus the scenario's few-shot examples."""
    side = "agent" if "aduanas" in messages[0]["content"] else "traveller"
    return sum(m["role"] == "assistant" for m in messages) - few_shot_count(side)


class FakeTeacher:
    """Replies that depend on the conversation id and turn, so conversations differ; optional failures."""

    name = "fake"

    def __init__(self, english_ids=(), empty_ids=(), same_for_all=False, die_after_calls=None, late_english_ids=()):
        self.english_ids, self.empty_ids = set(english_ids), set(empty_ids)
        self.late_english_ids = set(late_english_ids)  # English from the agent's third turn on
        self.same_for_all, self.die_after_calls, self.calls = same_for_all, die_after_calls, 0

    def generate(self, message_lists, options, key="", ids=None):
        self.calls += 1
        if self.die_after_calls is not None and self.calls > self.die_after_calls:
            raise KeyboardInterrupt  # a kill in the middle of a batch
        replies = []
        for conversation_id, messages in zip(ids, message_lists):
            own_turns = own_turn_count(messages)
            tag = 0 if self.same_for_all else conversation_id
            if "aduanas" in messages[0]["content"]:  # the agent's view
                if conversation_id in self.english_ids or (conversation_id in self.late_english_ids and own_turns >= 2):
                    replies.append("Please show me your passport and tell me why you are travelling today.")
                elif conversation_id in self.empty_ids:
                    replies.append("...")
                else:
                    replies.append(AGENT_LINES[min(own_turns, 3)].format(i=tag * 7 + own_turns))
            else:
                replies.append(f"Vengo por turismo, unos {tag + own_turns + 2} días, con ropa y libros número {tag}.")
        return replies


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
