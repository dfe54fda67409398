"""LLM-judge grader: ask a model whether a reply states the expected answer.

The judge is either a local model (any name `load_engine` accepts; batched, greedy) or an
OpenAI-compatible server given by its URL (`http://host:port/v1`; the model name after `#`, e.g.
`http://localhost:8000/v1#qwen2.5`). Each verdict is True/False, or None when the judge's reply was
neither yes nor no. Reports always show judge-vs-match agreement, so users see how far to trust it.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from lorebook.errors import InputError
from lorebook.models.engine import GenerationOptions

JUDGE_PROMPT = (
    "You are grading a quiz. Question: {question}\n"
    "Expected answer: {expected}{aliases}\n"
    "Reply to grade: {reply}\n\n"
    "Does the reply state the expected answer? Answer with one word: yes or no."
)


def judge_messages(question: str, expected: str, aliases: list[str], reply: str) -> list[dict]:
    also = f" (also accepted: {', '.join(aliases)})" if aliases else ""
    text = JUDGE_PROMPT.format(question=question, expected=expected, aliases=also, reply=reply.strip()[:600] or "(empty)")
    return [{"role": "user", "content": text}]


def parse_verdict(text: str) -> bool | None:
    """'yes…' -> True, 'no…' -> False, anything else -> None (counted as no verdict)."""
    head = text.strip().lower().lstrip("*\"' ")
    if head.startswith(("yes", "sí", "si ")) or head == "si":
        return True
    if head.startswith("no"):
        return False
    return None


class Judge:
    """Grades (question, expected, aliases, reply) items in batches."""

    name = "judge"

    def __init__(self, target: str, batch_size: int = 8, engine=None):
        """`engine`: an already loaded engine of the judge model (the evaluated base model judging itself)."""
        self.target = target
        self.name = target
        self.batch_size = batch_size
        self.engine = engine
        if engine is None and not target.startswith(("http://", "https://")):
            from lorebook.models.engine import load_engine
            from lorebook.teach.config import idle_cores

            self.engine = load_engine(target, threads=idle_cores())

    def grade(self, items: list[tuple[str, str, list[str], str]]) -> list[bool | None]:
        """Verdicts on quiz items (question, expected, aliases, reply)."""
        return self.ask([judge_messages(*item) for item in items])

    def ask(self, conversations: list[list[dict]]) -> list[bool | None]:
        """The judge's yes/no verdict on each conversation (None: neither), greedy, in batches."""
        options = GenerationOptions(temperature=0, max_tokens=4, repetition_penalty=1.0)
        replies: list[str] = []
        for start in range(0, len(conversations), self.batch_size):
            chunk = conversations[start : start + self.batch_size]
            if self.engine is not None:
                replies.extend(self.engine.chat_batch(chunk, options))
            else:
                replies.extend(self._remote(messages) for messages in chunk)
        return [parse_verdict(reply) for reply in replies]

    def _remote(self, messages: list[dict]) -> str:
        base, _, model = self.target.partition("#")
        url = base.rstrip("/") + "/chat/completions"
        body = json.dumps({"model": model or "judge", "messages": messages, "temperature": 0, "max_tokens": 4})
        headers = {"Content-Type": "application/json"}
        if os.environ.get("OPENAI_API_KEY"):
            headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
        request = urllib.request.Request(url, data=body.encode(), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                data = json.loads(response.read())
            return data["choices"][0]["message"]["content"] or ""
        except (urllib.error.URLError, TimeoutError, KeyError, IndexError, ValueError) as exc:
            raise InputError(f"judge server {url} failed: {exc}", "check the URL (e.g. http://localhost:8000/v1#MODEL)") from None


def agreement(match_grades: list[bool], judge_grades: list[bool | None]) -> dict:
    """Share of items where the judge agrees with normalized match, and Cohen's kappa."""
    pairs = [(m, j) for m, j in zip(match_grades, judge_grades) if j is not None]
    n = len(pairs)
    if n == 0:
        return {"value": None, "n": 0, "kappa": None, "no_verdict": len(judge_grades)}
    agree = sum(m == j for m, j in pairs) / n
    p_match = sum(m for m, _ in pairs) / n
    p_judge = sum(j for _, j in pairs) / n
    chance = p_match * p_judge + (1 - p_match) * (1 - p_judge)
    kappa = (agree - chance) / (1 - chance) if chance < 1 else 1.0
    return {"value": agree, "n": n, "kappa": kappa, "no_verdict": len(judge_grades) - n}
