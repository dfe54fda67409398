"""Text on its way to a voice: strip what should not be read aloud, and cut streamed text into sentences.

Models answer in Markdown with the odd emoji; a TTS engine would read "asterisk asterisk" or choke on
a pictograph. `speakable` keeps the words. `SentenceSplitter` receives LLM text deltas and releases each
sentence as soon as it is complete, so speech can start while the model is still writing.
"""

from __future__ import annotations

import re
import unicodedata

_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.DOTALL)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_URL = re.compile(r"https?://\S+")
_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_MARKUP = re.compile(r"(\*\*|__|\*|`|~~|^#{1,6}\s*|^\s*[-*+]\s+|^\s*>\s*)", re.MULTILINE)
_SPACES = re.compile(r"[ \t\r\f\v]+")


def speakable(text: str) -> str:
    """Text with Markdown, HTML tags, URLs, emoji and control characters removed; words and punctuation kept."""
    text = unicodedata.normalize("NFC", text)
    text = _CODE_BLOCK.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _URL.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = _MARKUP.sub("", text)
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char == "\n":
            kept.append(". " if kept and kept[-1] not in ".!?:;, " else " ")
        elif category in ("So", "Sk", "Cs", "Co", "Cn") or (category.startswith("C") and char != "\t"):
            kept.append(" ")  # emoji, pictographs, modifiers, control and private-use characters
        elif char in "\u200d\ufe0f\ufe0e":
            continue  # emoji joiners and variation selectors
        else:
            kept.append(char)
    text = _SPACES.sub(" ", "".join(kept))
    text = re.sub(r"\s+([.,!?;:])", r"\1", text)
    text = re.sub(r"([.!?])[.\s]*\.(\s|$)", r"\1\2", text)  # ". ." left behind by removed lines
    text = text.strip().lstrip(".,;: ")
    return text if has_words(text) else ""


def has_words(text: str) -> bool:
    """Whether there is anything a voice could say (a letter or digit)."""
    return any(ch.isalnum() for ch in text)


_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "sr", "sra", "st", "vs", "etc", "e.g", "i.e", "approx", "no"}
_END = re.compile(r"([.!?…]+[\"')\]]*)(\s+)")


class SentenceSplitter:
    """Accumulates streamed text; `push(delta)` returns the sentences completed by it, `flush()` the rest.

    A sentence ends at . ! ? … followed by whitespace (not after an abbreviation or a lone initial), or
    at a newline. The first piece may also end at a comma once it is `first_min_chars` long, because the
    first audio matters most for latency; a first piece longer than `first_max_chars`, or any piece longer
    than `max_chars`, is cut at a space.
    """

    def __init__(self, first_min_chars: int = 24, max_chars: int = 220, first_max_chars: int = 90):
        self.buffer = ""
        self.first_min_chars = first_min_chars
        self.first_max_chars = first_max_chars
        self.max_chars = max_chars
        self.emitted = 0

    def push(self, delta: str) -> list[str]:
        self.buffer += delta
        out: list[str] = []
        while True:
            piece = self._next_piece()
            if piece is None:
                return out
            if has_words(piece):
                out.append(piece)
                self.emitted += 1

    def flush(self) -> list[str]:
        rest, self.buffer = self.buffer.strip(), ""
        return [rest] if has_words(rest) else []

    def _next_piece(self) -> str | None:
        text = self.buffer
        newline = text.find("\n")
        for match in _END.finditer(text):
            if newline != -1 and newline < match.start():
                break
            word = text[: match.start()].rsplit(None, 1)[-1] if text[: match.start()].strip() else ""
            if word.lower().rstrip(".") in _ABBREVIATIONS or (len(word) == 1 and word.isupper()):
                continue
            return self._cut(match.end())
        if newline != -1:
            return self._cut(newline + 1)
        if self.emitted == 0 and len(text) >= self.first_min_chars:
            comma = max(text.rfind(", "), text.rfind("; "), text.rfind(": "))
            if comma >= self.first_min_chars // 2:
                return self._cut(comma + 2)
        limit = self.first_max_chars if self.emitted == 0 else self.max_chars
        if len(text) > limit:
            space = text.rfind(" ", 0, limit)
            return self._cut(space + 1 if space > 0 else limit)
        return None

    def _cut(self, at: int) -> str:
        piece, self.buffer = self.buffer[:at].strip(), self.buffer[at:]
        return piece


def _words(text: str) -> list[str]:
    text = unicodedata.normalize("NFC", text.lower())
    return re.sub(r"[^\w\s']", " ", text).replace("'", "").split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, ignoring case and punctuation."""
    ref, hyp = _words(reference), _words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))  # edit distance over words, one row at a time
    for i, word in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, other in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other))
        previous = current
    return previous[-1] / len(ref)
