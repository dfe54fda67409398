"""Normalized-match grading: does a reply state the expected answer (or an alias)?

Both the reply and the answer go through the same normalization, so the rules are symmetric:
lower case, accents stripped ("Zoë" = "Zoe"), punctuation dropped, articles dropped, thousands
separators and ordinal suffixes removed ("1,000" = "1000", "95th" = "95"), and runs of number
words turned into digits ("ninety-five" = "ninety fifth" = "95", "nineteen ninety" = "1990").
The answer must then appear as a whole run of tokens inside the reply, so "Paris" does not match
"Parisian" and "Brendan Fraser" does not match "Brendan Gleeson". A match directly preceded by a
negation ("not Paris", "no es Madrid") does not count.
"""

from __future__ import annotations

import re
import unicodedata

ARTICLES = frozenset({"the", "a", "an", "el", "la", "los", "las", "un", "una"})
NEGATIONS = frozenset({"not", "no", "never", "isn't", "isnt", "nor", "nunca"})

UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
    "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
    "twentieth": 20, "thirtieth": 30, "fortieth": 40, "fiftieth": 50, "sixtieth": 60, "seventieth": 70,
    "eightieth": 80, "ninetieth": 90,
}
SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
SCALE_ORDINALS = {"hundredth": 100, "thousandth": 1000, "millionth": 1_000_000}


def _small_value(word: str) -> int | None:
    return UNITS.get(word, TENS.get(word, ORDINALS.get(word)))


def _is_number_word(word: str) -> bool:
    return _small_value(word) is not None or word in SCALES or word in SCALE_ORDINALS


def _numbers_to_digits(tokens: list[str]) -> list[str]:
    """Replace each run of number words with its value in digits ("twenty three" -> "23")."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        if not _is_number_word(tokens[i]):
            out.append(tokens[i])
            i += 1
            continue
        total, current = 0, 0
        while i < len(tokens):
            word = tokens[i]
            # "and" inside a number ("one hundred and five") only when another number word follows.
            if word == "and" and i + 1 < len(tokens) and _is_number_word(tokens[i + 1]) and (total or current >= 100):
                i += 1
                continue
            small = _small_value(word)
            scale = SCALES.get(word, SCALE_ORDINALS.get(word))
            if small is not None:
                if current % 100 and (small >= 10 or current % 10) and current < 100:
                    current = current * 100 + small  # spoken years: "nineteen ninety" -> 1990
                else:
                    current += small
            elif scale == 100:
                current = (current or 1) * 100
            elif scale is not None:
                total += (current or 1) * scale
                current = 0
            else:
                break
            i += 1
        out.append(str(total + current))
    return out


def tokens(text: str) -> list[str]:
    """Normalized tokens of a text (see the module docstring for the rules)."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = re.sub(r"(?<=\d)[,\u00a0 ](?=\d{3}\b)", "", text)  # 1,000 / 1 000 -> 1000
    text = re.sub(r"\b(\d+)(st|nd|rd|th|º|ª)\b", r"\1", text)  # 95th -> 95
    text = re.sub(r"(?<=[a-z])'(?=[a-z])", "", text)  # isn't -> isnt, keeps the word whole
    text = re.sub(r"(?<=\d)\.(?=\d)", "\0", text)  # keep decimal points through punctuation removal
    text = re.sub(r"[^\w\0]+|_", " ", text).replace("\0", ".")
    words = [w for w in text.split() if w not in ARTICLES]
    return _numbers_to_digits(words)


def normalize(text: str) -> str:
    """The normalized form of a text as one string."""
    return " ".join(tokens(text))


def _find_all(haystack: list[str], needle: list[str]) -> list[int]:
    size = len(needle)
    return [i for i in range(len(haystack) - size + 1) if haystack[i : i + size] == needle]


def match(reply: str, answers: list[str]) -> bool:
    """True when the reply states one of the answers (the expected answer first, then its aliases)."""
    reply_tokens = tokens(reply)
    for answer in answers:
        needle = tokens(answer)
        if not needle:
            continue
        for start in _find_all(reply_tokens, needle):
            before = reply_tokens[max(0, start - 2) : start]
            if not NEGATIONS.intersection(before):
                return True
    return False
