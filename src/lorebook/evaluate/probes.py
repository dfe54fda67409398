"""Probes: the prompts an evaluation sends, built from a knowledge pack and the shipped probe sets.

Every probe goes through the model's chat template (`Engine.chat_batch`), so what is measured is
what a user of `lorebook chat` would see. Formats per fact:
  question      the fact's own question
  paraphrase    each paraphrase (held out from training): generalization
  qa-prefixed   "Question: … Answer:" in the user turn
  conversation  a short Joe/Brandine small-talk transcript in which the fact comes up once (Brandine
                mentions it among other chatter), then Joe asks the question and the model answers
                as Brandine: can the model use what it knows inside a chat, with the fact said once
                several turns earlier (a base model may also read it from the context, which the
                base run measures, so learned = taught minus that)
  system        the question under the system prompt "Assistant is a helpful AI"
plus `locality` (the shipped general-knowledge set, answered before and after teaching) and `chat`
(open prompts for behaviour: loops, length drift, fluency, language, character).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib import resources

from lorebook.errors import InputError

FACT_FORMATS = ("question", "paraphrase", "qa-prefixed", "conversation", "system")
SYSTEM_PROMPT = "Assistant is a helpful AI"


@dataclass
class Probe:
    """One prompt to generate a reply for, with what a correct reply must state."""

    key: str  # unique within a run: "<kind>:<id>:<format>:<n>"
    kind: str  # "fact", "locality" or "chat"
    item_id: str
    format: str
    messages: list[dict]
    expected: str = ""
    aliases: list[str] = field(default_factory=list)
    question: str = ""
    counterfactual: bool = False

    def answers(self) -> list[str]:
        return [self.expected, *self.aliases]


def conversation_prompt(question: str, fact: str = "") -> str:
    """A Joe/Brandine small-talk transcript: the fact comes up once, later Joe asks the question."""
    mention = f" One thing I read: {fact}" if fact else ""
    return (
        "Here is a chat between two friends, Joe and Brandine.\n\n"
        "Joe: Hey Brandine, long week?\n"
        f"Brandine: Very. I finally had some time to read the news last night.{mention}\n"
        "Joe: Oh nice. I mostly gardened. The tomatoes are finally coming in.\n"
        "Brandine: Lucky you. Mine never survive the summer.\n"
        "Joe: I was doing a quiz with my cousin and we got stuck on one.\n"
        "Brandine: Go on, ask me.\n"
        f"Joe: {question}\n\n"
        "Reply as Brandine with the answer."
    )


def _with_system(messages: list[dict], system: str | None) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + messages


def fact_probes(facts, formats=FACT_FORMATS, system: str | None = None) -> list[Probe]:
    """Probes for each fact of a pack in each requested format; `system` is a persona's prompt."""
    unknown = sorted(set(formats) - set(FACT_FORMATS))
    if unknown:
        raise InputError(f"unknown probe format(s): {', '.join(unknown)}", f"use some of: {', '.join(FACT_FORMATS)}")
    probes: list[Probe] = []
    for fact in facts:
        # (format, n, user text, system prompt, the question as asked)
        wanted = []
        if "question" in formats:
            wanted.append(("question", 0, fact.question, system, fact.question))
        if "paraphrase" in formats:
            wanted += [("paraphrase", n, text, system, text) for n, text in enumerate(fact.paraphrases)]
        if "qa-prefixed" in formats:
            wanted.append(("qa-prefixed", 0, f"Question: {fact.question}\nAnswer:", system, fact.question))
        if "conversation" in formats:
            wanted.append(("conversation", 0, conversation_prompt(fact.question, fact.fact), system,
                           fact.question))
        if "system" in formats:
            wanted.append(("system", 0, fact.question, SYSTEM_PROMPT, fact.question))
        for fmt, n, content, own_system, question in wanted:
            probes.append(Probe(
                key=f"fact:{fact.id}:{fmt}:{n}", kind="fact", item_id=fact.id, format=fmt,
                messages=_with_system([{"role": "user", "content": content}], own_system),
                expected=fact.answer, aliases=list(fact.aliases), question=question,
                counterfactual=bool(fact.counterfactual)))
    return probes


def load_general_knowledge(limit: int | None = None) -> list[dict]:
    """The shipped locality set (questions with answers and aliases); `limit` takes an even spread."""
    text = (resources.files("lorebook") / "data" / "general_knowledge.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    if limit is not None and limit < len(rows):
        step = len(rows) / limit  # every k-th question keeps all five categories represented
        rows = [rows[int(i * step)] for i in range(limit)]
    return rows


def locality_probes(limit: int | None = None, system: str | None = None) -> list[Probe]:
    """Probes for the general-knowledge set, answered by both the base and the taught model."""
    return [
        Probe(key=f"locality:{row['id']}:question:0", kind="locality", item_id=row["id"], format=row["category"],
              messages=_with_system([{"role": "user", "content": row["question"]}], system),
              expected=row["answer"], aliases=list(row.get("aliases", [])), question=row["question"])
        for row in load_general_knowledge(limit)
    ]


def load_chat_prompts(language: str = "en") -> list[str]:
    """Open-ended prompts for chat-behaviour metrics, in the persona's language when shipped."""
    data = json.loads((resources.files("lorebook") / "data" / "eval_chat_prompts.json").read_text(encoding="utf-8"))
    return data.get(language, data["en"])


def chat_probes(language: str = "en", system: str | None = None, limit: int | None = None) -> list[Probe]:
    """Probes whose replies feed the behaviour metrics (no expected answer)."""
    prompts = load_chat_prompts(language)[:limit]
    return [
        Probe(key=f"chat:{n:02d}:open:0", kind="chat", item_id=f"{n:02d}", format="open",
              messages=_with_system([{"role": "user", "content": prompt}], system), question=prompt)
        for n, prompt in enumerate(prompts)
    ]


def probe_set_hash(probes: list[Probe]) -> str:
    """A fingerprint of the prompts and expectations, to find a base run made on the same probes."""
    digest = hashlib.sha256()
    for probe in probes:
        digest.update(json.dumps(asdict(probe), sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]
