"""Chat-behaviour checks on replies: empty, looping, fluency (n-gram entropy), language, character."""

from __future__ import annotations

import math
import re
from collections import Counter

WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)

# Phrases by which a persona breaks character (admits being a model or leaves its role).
ROLE_BREAKS = (
    "as an ai", "i am an ai", "i'm an ai", "language model", "as an assistant", "i am a computer program",
    "artificial intelligence", "i'm just a program", "soy una ia", "soy un modelo", "modelo de lenguaje",
    "inteligencia artificial", "como ia", "soy un asistente", "soy una asistente", "programa informático",
    # an assistant's disclaimers in a character's mouth ("no tengo acceso a datos … en tiempo real")
    "i don't have access", "i do not have access", "no tengo acceso", "en tiempo real", "directrices del sistema",
)


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def is_empty(text: str) -> bool:
    """A reply with no letters or digits at all."""
    return not any(ch.isalnum() for ch in text)


def is_loop(text: str, min_words: int = 12) -> bool:
    """A repetition loop: one n-gram (n = 1..8) repeated so often it covers half of a long reply."""
    tokens = words(text)
    if len(tokens) < min_words:
        return False
    for n in range(1, 9):
        grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        gram, count = grams.most_common(1)[0]
        if n == 1 and not any(ch.isalnum() for ch in gram[0]):
            continue  # punctuation repeats in normal text
        if count >= 4 and count * n >= 0.5 * len(tokens):
            return True
    return False


def is_degenerate(text: str) -> bool:
    return is_empty(text) or is_loop(text)


def ngram_entropy(text: str) -> float:
    """Fluency score as in ROME/MEMIT: weighted 2- and 3-gram entropy (bits); loops score low."""
    tokens = words(text)
    total = 0.0
    for n, weight in ((2, 2 / 3), (3, 4 / 3)):
        grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        count = sum(grams.values())
        if count:
            total += weight * -sum(c / count * math.log2(c / count) for c in grams.values())
    return total / 2


_LANGID = None


def language_of(text: str) -> str:
    """ISO 639-1 code of the reply's language, by py3langid (offline, model shipped in the wheel)."""
    global _LANGID
    if _LANGID is None:
        try:
            import py3langid
        except ImportError:
            from lorebook.errors import LorebookError

            raise LorebookError("language ID needs py3langid", "pip install 'lorebook[eval]'") from None
        _LANGID = py3langid
    if is_empty(text):
        return "und"
    return _LANGID.classify(text)[0]


def breaks_character(text: str) -> bool:
    """True when the reply steps out of the persona (claims to be an AI, a model, an assistant)."""
    lowered = text.lower()
    return any(phrase in lowered for phrase in ROLE_BREAKS)
