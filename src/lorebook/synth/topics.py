"""Is a turn about the job? A word-list rule: the scenario names the beginnings of the words its agent's
job is made of (`agent.topics: [pasaporte, viaj, declar, …]`) and a turn that uses none of them is off topic.

Small teachers write fluent Spanish that has nothing to do with customs ("Me gustaría ver al perro que
tiene hambre…"); the language filter passes it and the in-character rule (AI admissions, role breaks,
loops) passes it too. This rule catches the plainest of it, and it is cheap enough to run on every
generated turn. It cannot see a topic word used off the role ("¡Qué rico! Me encanta el jamón"), so
`lorebook eval --persona` reports its score on the scenario's hand-labelled turns beside its share.
"""

from __future__ import annotations

import re
import unicodedata

WORD = re.compile(r"\w+")


def normalize_words(text: str) -> list[str]:
    """Lower-case words without accents: 'Días' and 'dias' match."""
    text = "".join(ch for ch in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(ch))
    return WORD.findall(text)


def begins_any(words, beginnings) -> bool:
    """True when one of `words` (normalized) begins with one of `beginnings` (normalized)."""
    return any(word.startswith(beginning) for word in words for beginning in beginnings)


def on_topic(text: str, topics: tuple[str, ...]) -> bool:
    """True when a word of `text` begins with one of `topics` (already normalized); no topics: always True."""
    if not topics:
        return True
    return begins_any(normalize_words(text), topics)


def check_topics(topics: tuple[str, ...], labelled: dict[str, list[tuple[str, str]]]) -> dict:
    """The rule on the scenario's hand-labelled turns (eval.judge_check): accuracy and kappa against the labels."""
    from lorebook.evaluate.judge import agreement

    labels = [True] * len(labelled.get("in_role", [])) + [False] * len(labelled.get("out_of_role", []))
    replies = [reply for _, reply in labelled.get("in_role", []) + labelled.get("out_of_role", [])]
    return agreement(labels, [on_topic(reply, topics) for reply in replies])
