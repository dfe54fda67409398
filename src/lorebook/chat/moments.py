"""Best of several replies, picked by the moments of example conversations (a persona's `moments:`).

A small tuned persona often has a fitting reply among a handful of samples but says a misplaced one greedily:
the 270M customs officer answers "A usted." to "Adiós" and the bus line to "¿Dónde recojo mi maleta?",
because it learned the interview's lines better than when to say them. The example conversations it was
taught on (chat JSONL, e.g. the `synth --scripted-agent` outlines) say what follows which line. Each
(user line → reply) pair there is a moment; for a new user line the picker takes the `neighbours` moments
whose user line is most similar (sentence embeddings, the notebook's bundled MiniLM) and keeps the candidate most
similar to one of their replies. A candidate that says again what the persona already said in this
conversation loses `repeat_penalty` per unit of similarity above 0.8: small models loop, and the moments
alone cannot see that. A candidate also loses `unknown_word_penalty` per word no reply of the moments uses:
a garbled sample ("Las tarjillas son al fondo", "10.0800 euros") can sit close to a fitting reply in embedding
space, but its made-up words are not in what the persona was taught to say (on 660 read turns, 29% of the
replies read out of role had such a word against 3% of those read in role). With `context_weight`, the
neighbours are ranked by the user line plus that weight times the similarity of the persona's own line before
it: "Vengo de vacaciones" is answered "¿Lleva algo que declarar?" after "¿Motivo del viaje?" but "Bienvenido a
España" when the declaration came first, and the user line alone cannot tell those moments apart (on 1620 read
turns, the AUC of the picker's score against the reading rose from 0.720 to 0.773 with 0.5, but the picks of
customs-es11 read 120 of 180 in role against 118 without it, so it is off by default). The greedy reply is
always a candidate, so the persona's usual answer wins ties.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np

from lorebook.errors import InputError, PersonaError

REPEAT_FLOOR = 0.8  # below this cosine two turns of one conversation are different things said
WORD = re.compile(r"\w+")


@dataclass
class MomentsConfig:
    """How a persona picks among candidate replies; each field's help doubles as documentation of the YAML."""

    file: str = field(default="", metadata={
        "help": "chat JSONL of example conversations whose moments judge replies"})
    candidates: int = field(default=6, metadata={
        "help": "replies per turn: the greedy one plus this many minus one sampled"})
    temperature: float = field(default=0.8, metadata={"help": "sampling temperature of the extra candidates"})
    neighbours: int = field(default=20, metadata={
        "help": "moments, by similarity of their user line, a reply is compared with"})
    repeat_penalty: float = field(default=5.0, metadata={
        "help": "score lost per unit of similarity above 0.8 to an earlier reply"})
    unknown_word_penalty: float = field(default=0.5, metadata={
        "help": "score lost per word of a reply that no reply of the moments uses (0: off)"})
    context_weight: float = field(default=0.0, metadata={
        "help": "weight of the persona's previous line when ranking moments by similarity (0: the user line only)"})

    @classmethod
    def from_yaml(cls, value, source: str) -> MomentsConfig:
        """From a persona's `moments:` (a path, or a mapping of these fields); a relative path is the
        persona file's."""
        data = {"file": value} if isinstance(value, str) else value
        if not isinstance(data, dict) or not isinstance(data.get("file"), str) or not data["file"]:
            raise PersonaError(f"persona {source}: moments must be a file path or a mapping with file:",
                               "e.g. moments: {file: outlines.jsonl, candidates: 6}")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise PersonaError(f"persona {source}: unknown moments keys {', '.join(unknown)}",
                               "allowed: " + ", ".join(cls.__dataclass_fields__))
        for name, whole in (("candidates", True), ("neighbours", True), ("temperature", False),
                            ("repeat_penalty", False), ("unknown_word_penalty", False), ("context_weight", False)):
            value = data.get(name, 1)
            kind = int if whole else (int, float)
            if not isinstance(value, kind) or isinstance(value, bool) or value < (1 if whole else 0):
                wanted = "a whole number ≥ 1" if whole else "a number ≥ 0"
                raise PersonaError(f"persona {source}: moments {name} must be {wanted}",
                                   f"e.g. {name}: {getattr(cls(), name)}")
        config = cls(**data)
        path = Path(config.file).expanduser()
        if not path.is_absolute() and source:
            path = Path(source).parent / path
        config.file = str(path)
        return config


def read_moments(path: str | Path, with_before: bool = False) -> list[tuple[str, ...]]:
    """Distinct (user line, assistant reply) pairs of a chat JSONL file, in file order; `with_before`: distinct
    (user line, reply, the assistant's line before the user line or '') triples."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"moments file {path} does not exist",
                         "point moments: at a chat JSONL file (e.g. synth output)")
    pairs: dict[tuple[str, ...], None] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            messages = json.loads(line)["messages"]
            roles = [(m["role"], m["content"]) for m in messages]
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{path}:{number} is not a chat JSONL line",
                             'each line needs {"messages": [{"role", "content"}, …]}') from None
        before = ""
        for (role, text), (next_role, reply) in pairwise(roles):
            if role == "user" and next_role == "assistant" and text.strip() and reply.strip():
                pairs[(text.strip(), reply.strip(), before)[: 3 if with_before else 2]] = None
            if role == "assistant":
                before = text.strip()
    if not pairs:
        raise InputError(f"moments file {path} has no user line followed by a reply",
                         "use chat JSONL conversations")
    return list(pairs)


class MomentPicker:
    """`pick(messages, candidates)` → the candidate that best fits the moments after the last user line."""

    def __init__(self, config: MomentsConfig, embedder=None):
        from lorebook.notebook.embedder import Embedder

        self.config = config
        self.embedder = embedder or Embedder()
        found = read_moments(config.file, with_before=bool(config.context_weight))
        self.user_vectors = self.embedder.embed([moment[0] for moment in found])
        self.reply_vectors = self.embedder.embed([moment[1] for moment in found])
        self.vocabulary = {word for moment in found for word in words(moment[1])}
        if config.context_weight:
            # A moment at the start of a conversation has no line before: a zero vector, similar to nothing.
            self.opens = np.array([not moment[2] for moment in found])
            before_vectors = self.embedder.embed([moment[2] or "-" for moment in found])
            self.before_vectors = np.where(self.opens[:, None], 0.0, before_vectors)

    def closeness(self, heard_vector: np.ndarray, before_vector: np.ndarray | None = None) -> np.ndarray:
        """How close each moment is to this point of the conversation: its user line to the last one heard, plus
        `context_weight` times its line before to the persona's line before that (`before_vector`; None at an
        opening, which is 1 away from the outlines' openings)."""
        closeness = self.user_vectors @ heard_vector
        if not self.config.context_weight:
            return closeness
        context = self.before_vectors @ before_vector if before_vector is not None else self.opens.astype(float)
        return closeness + self.config.context_weight * context

    def scores(self, messages: list[dict], candidates: list[str]) -> np.ndarray:
        """One score per candidate: best similarity to a neighbour moment's reply, less the repeat and unknown
        word penalties."""
        heard = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        said = [m["content"] for m in messages if m["role"] == "assistant"]
        vectors = self.embedder.embed([heard, *candidates, *said])
        heard_vector, said_vectors = vectors[0], vectors[len(candidates) + 1:]
        candidate_vectors = vectors[1:len(candidates) + 1]
        # The persona's line before the last user line is one of `said`, already embedded.
        heard_at = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=len(messages))
        said_before = sum(m["role"] == "assistant" for m in messages[:heard_at])
        before = said_vectors[said_before - 1] if said_before and said[said_before - 1] else None
        nearest = np.argsort(-self.closeness(heard_vector, before))[: self.config.neighbours]
        fit = (candidate_vectors @ self.reply_vectors[nearest].T).max(axis=1)
        if len(said_vectors):
            echo = (candidate_vectors @ said_vectors.T).max(axis=1)
            fit = fit - self.config.repeat_penalty * np.clip(echo - REPEAT_FLOOR, 0.0, None)
        if self.config.unknown_word_penalty:
            unknown = [sum(word not in self.vocabulary for word in words(text)) for text in candidates]
            fit = fit - self.config.unknown_word_penalty * np.array(unknown, dtype=float)
        return fit - np.array([0.0 if text.strip() else 10.0 for text in candidates])

    def pick(self, messages: list[dict], candidates: list[str]) -> str:
        """The best candidate; the first (greedy) one on ties."""
        return candidates[int(np.argmax(self.scores(messages, candidates)))]


def words(text: str) -> list[str]:
    """The lowercased words of a line ("10.000" is two: numbers are checked piece by piece)."""
    return WORD.findall(text.lower())


_pickers: dict[tuple, MomentPicker] = {}


def picker_for(config: MomentsConfig) -> MomentPicker:
    """A picker shared by every session of the same moments file (embedding it takes seconds); a changed file
    is read again."""
    path = Path(config.file)
    changed = path.stat().st_mtime_ns if path.exists() else 0
    key = (str(path), changed, config.neighbours, config.repeat_penalty, config.unknown_word_penalty,
           config.context_weight)
    if key not in _pickers:
        _pickers[key] = MomentPicker(config)
    return _pickers[key]


def candidate_replies(engine, conversations: list[list[dict]], options,
                      config: MomentsConfig) -> list[list[str]]:
    """`config.candidates` replies per conversation: greedy first, then samples, all in two batches (seeded by
    the options' seed when it has one, as eval does, so a rerun picks among the same candidates)."""
    greedy = engine.chat_batch(conversations, options.updated(temperature=0.0))
    extra = config.candidates - 1
    repeated = [conversation for conversation in conversations for _ in range(extra)]
    sampled = engine.chat_batch(repeated, options.updated(temperature=config.temperature)) if extra else []
    return [[greedy[i].strip(), *(text.strip() for text in sampled[i * extra:(i + 1) * extra])]
            for i in range(len(conversations))]


def picked_replies(engine, conversations: list[list[dict]], options, config: MomentsConfig) -> list[str]:
    """Each conversation's reply as a persona with `moments:` gives it: the best of its candidates. Chat,
    eval persona, redteam and the server all answer through this."""
    picker = picker_for(config)
    found = candidate_replies(engine, conversations, options, config)
    return [picker.pick(messages, candidates) for messages, candidates in zip(conversations, found)]
