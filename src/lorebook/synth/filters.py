"""Filters that decide which generated conversations are worth training on, and say why others were not.

Per turn: empty turns; looping turns (one n-gram covering half a long turn, a side repeating one of its
earlier lines, or the agent nearly so: word 3-gram Jaccard >= 0.5, the rule `eval --persona` scores by);
agent turns not in the scenario's language (py3langid restricted to likely languages; turns too short
to call pass); turns that parrot the other side (its turns; for the agent also the traveller's few-shot
lines; a small traveller model asks the officer's question back); agent turns
that admit being an AI or leave the role (evaluate.behaviour.ROLE_BREAKS, or the scenario's
`agent.out_of_role` phrases); and, when the scenario lists `agent.topics`, agent turns that use none of
them (synth.topics). A conversation spoiled late is trimmed to the good turns before the problem when
enough of them remain, otherwise dropped. Per conversation: near-duplicates of a conversation already
kept, by Jaccard similarity of word 3-gram shingles.
"""

from __future__ import annotations

import unicodedata

from lorebook.evaluate.behaviour import is_empty, is_loop
from lorebook.synth.topics import normalize_words, on_topic

DEFAULT_DUPLICATE_THRESHOLD = 0.7
REPEAT_THRESHOLD = 0.5  # a turn sharing half its word 3-grams with one of the side's earlier turns says it again
MIN_AGENT_TURNS = 2  # a trimmed conversation shorter than this teaches too little of the role
# Languages written in Latin script: a Cyrillic or CJK word in their turns is a small model's stray
# continuation ("… aquí. Меня зовут"), which the language identifier misses when the rest is Spanish.
LATIN_SCRIPT = {"es", "en", "fr", "de", "it", "pt", "ca", "nl", "ro", "pl", "sv", "da", "no", "fi", "cs"}


def foreign_script(text: str, language: str) -> bool:
    """True when a turn in a Latin-script language contains letters of another script."""
    if language not in LATIN_SCRIPT:
        return False
    return any(ch.isalpha() and not unicodedata.name(ch, "LATIN").startswith("LATIN") for ch in text)


def turn_problem(previous: list[dict], role: str, text: str, language: str, check_language: bool = True,
                 topics: tuple[str, ...] = (), heard: tuple[str, ...] = (), out_of_role: tuple[str, ...] = (),
                 once: tuple[str, ...] = ()) -> str | None:
    """Why one turn spoils its conversation (empty_turn, looping_turn, wrong_language, parroting,
    out_of_character: an AI admission, a role break or one of the scenario's `out_of_role` phrases,
    off_topic), or None.

    `previous` are the turns before it (a side repeating one of its own earlier lines is looping; a side
    saying nearly what the other side said is parroting, and for the agent so is a line of `heard`, the other
    side's few-shot lines the teacher was shown: a small teacher copies "Llevo un poco de queso y jamón" out
    of its prompt, and a small traveller asks the officer's question back). `once` are normalized phrases the
    agent says at most once per conversation (its closings: a second "bienvenido a España" after the decision
    is a loop, not an answer)."""
    from lorebook.redteam.graders import reply_language, role_breaks

    if is_empty(text):
        return "empty_turn"
    normal, fingerprint = " ".join(text.lower().split()), shingles([{"text": text}])
    own = [t for t in previous if t["role"] == role]
    if is_loop(text) or any(" ".join(t["text"].lower().split()) == normal for t in own) or (
            role == "agent" and any(jaccard(fingerprint, shingles([t])) >= REPEAT_THRESHOLD for t in own)):
        return "looping_turn"
    other_side = [t["text"] for t in previous if t["role"] != role] + (list(heard) if role == "agent" else [])
    # Four words at least: "Buenos días." said back is politeness, not parroting.
    parrots = any(jaccard(fingerprint, shingles([{"text": line}])) >= REPEAT_THRESHOLD
                  for line in other_side if len(normalize_words(line)) >= 4)
    if role != "agent":
        return "parroting" if parrots else None
    said = f" {' '.join(normalize_words(text))} "
    earlier = [f" {' '.join(normalize_words(t['text']))} " for t in own]
    if any(f" {phrase} " in said and any(f" {phrase} " in line for line in earlier) for phrase in once):
        return "looping_turn"
    if check_language and (foreign_script(text, language) or reply_language(text) not in ("und", language)):
        return "wrong_language"
    if parrots:
        return "parroting"
    if role_breaks(text, None, True) or any(f" {phrase} " in said for phrase in out_of_role):
        return "out_of_character"
    if not on_topic(text, topics):
        return "off_topic"
    return None


def first_problem(conversation_turns: list[dict], language: str, check_language: bool = True,
                  topics: tuple[str, ...] = (), heard: tuple[str, ...] = (), out_of_role: tuple[str, ...] = (),
                  once: tuple[str, ...] = ()) -> tuple[int, str] | None:
    """(index, reason) of the first turn that spoils a conversation (see turn_problem); (0, no_agent_turn)
    when the agent never spoke."""
    if not any(turn["role"] == "agent" for turn in conversation_turns):
        return 0, "no_agent_turn"
    for index, turn in enumerate(conversation_turns):
        reason = turn_problem(conversation_turns[:index], turn["role"], turn["text"], language, check_language, topics,
                              heard, out_of_role, once)
        if reason:
            return index, reason
    return None


def trimmed(conversation_turns: list[dict], index: int, min_agent_turns: int = MIN_AGENT_TURNS) -> list[dict] | None:
    """The turns before the bad one at `index`, ending on an agent turn, if `min_agent_turns` agent turns remain.

    A small teacher often spoils a good conversation late (a stray Cyrillic tail in turn 7): the turns
    before it are still good training data, and dropping the whole conversation wasted them (37 of 40 drops
    in a 64-conversation Gemma 270M run were one such turn)."""
    kept = list(conversation_turns[:index])
    while kept and kept[-1]["role"] != "agent":
        kept.pop()
    return kept if sum(turn["role"] == "agent" for turn in kept) >= min_agent_turns else None


def shingles(turns: list[dict], size: int = 3) -> frozenset:
    """Word n-grams of all turns (lower case, accents removed) — the fingerprint for near-duplicates."""
    words = normalize_words(" ".join(turn["text"] for turn in turns))
    return frozenset(tuple(words[i : i + size]) for i in range(max(1, len(words) - size + 1)))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class DuplicateFilter:
    """Remembers kept conversations and flags new ones too similar to any of them.

    A linear scan: fine for the thousands of conversations a CPU run produces (MinHash/LSH would be the
    next step for millions)."""

    def __init__(self, threshold: float = DEFAULT_DUPLICATE_THRESHOLD):
        self.threshold = threshold
        self.kept: list[frozenset] = []

    def is_duplicate(self, turns: list[dict]) -> bool:
        fingerprint = shingles(turns)
        return any(jaccard(fingerprint, other) >= self.threshold for other in self.kept)

    def add(self, turns: list[dict]) -> None:
        self.kept.append(shingles(turns))
