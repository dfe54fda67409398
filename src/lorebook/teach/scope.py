"""Adapter scope: a taught adapter answers the questions it was taught for, the base model the rest.

LoRA on a small model changes answers far from what it taught: SmolLM2-135M taught the 23 Oscars
facts kept only about half of its general-knowledge answers unchanged, replay or not. The scope is
the same remedy the notebook uses (a scope classifier, as in SERAC-style memory editing): the texts an
adapter was taught (questions, rewordings, facts) are embedded with the bundled MiniLM, and a request
whose last user message scores at least the calibrated cosine threshold against them goes to the taught
weights; everything else goes to the untouched base weights, so its answer is exactly the base model's.

The threshold is calibrated at teach time from the taught questions (must pass) and unrelated prompts
(must not): the replay prompts and the even-numbered half of the general-knowledge probes. The other
half is never seen by calibration, so evaluation can report locality on questions the gate did not
tune on. Persona and conversation adapters get no scope: their behaviour should apply everywhere.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

SCOPE_FILE = "scope.json"
MARGIN = 0.02  # above the highest unrelated score: a near tie still goes to the base model


@dataclass
class AdapterScope:
    """Texts an adapter covers and the cosine threshold a query must reach to use it."""

    texts: list[str]
    threshold: float
    enabled: bool = True
    report: dict = field(default_factory=dict)
    _vectors: np.ndarray | None = field(default=None, repr=False, compare=False)

    def vectors(self) -> np.ndarray:
        from lorebook.notebook.embedder import get_embedder

        if self._vectors is None:
            self._vectors = get_embedder().embed(self.texts)
        return self._vectors

    def scores(self, queries: list[str]) -> np.ndarray:
        """Each query's best cosine similarity to the scope's texts, over the query and its sentences.

        A long message (a pasted chat, a question after some small talk) embeds as a blur of everything
        in it, and MiniLM reads only its first 128 tokens; scoring each line and sentence as well finds
        the taught question wherever it sits.
        """
        from lorebook.notebook.embedder import get_embedder

        if not queries:
            return np.zeros(0)
        pieces = [segments(query) for query in queries]
        flat = [piece for group in pieces for piece in group]
        best = (get_embedder().embed(flat) @ self.vectors().T).max(axis=1)
        ends = np.cumsum([len(group) for group in pieces])
        return np.array([best[end - len(group) : end].max() for group, end in zip(pieces, ends)])

    def covers(self, queries: list[str]) -> list[bool]:
        """Which queries the adapter should answer (empty queries never)."""
        scores = self.scores([q or "" for q in queries])
        return [bool(q) and float(s) >= self.threshold for q, s in zip(queries, scores)]

    def save(self, directory: Path) -> Path:
        data = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        path = Path(directory) / SCOPE_FILE
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, directory: Path) -> AdapterScope | None:
        """The scope saved beside an adapter, or None when it has none."""
        path = Path(directory) / SCOPE_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(texts=data["texts"], threshold=float(data["threshold"]), enabled=data.get("enabled", True),
                   report=data.get("report", {}))


SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
MAX_SEGMENTS = 32  # a pasted document is judged by its first 32 sentences


def segments(query: str) -> list[str]:
    """The query itself, and for a longer one its lines and sentences."""
    parts = [part.strip() for part in SENTENCE_END.split(query) if part.strip()]
    return [query] + (parts[:MAX_SEGMENTS] if len(parts) > 1 else [])


def unrelated_prompts() -> list[str]:
    """Calibration's out-of-scope set: the shipped replay prompts and the even half of the general probes."""
    from importlib import resources

    data = resources.files("lorebook.data")
    replay = json.loads((data / "replay_prompts.json").read_text())
    general = [json.loads(line)["question"] for line in (data / "general_knowledge.jsonl").read_text().splitlines()
               if line.strip()]
    return [p if isinstance(p, str) else p["prompt"] for p in replay] + general[::2]


def calibrate(texts: list[str], in_scope: list[str], out_of_scope: list[str] | None = None) -> AdapterScope:
    """A scope over `texts` whose threshold passes the in-scope queries and stops the unrelated ones."""
    from lorebook.notebook.scope import threshold_between

    scope = AdapterScope(texts=list(dict.fromkeys(t for t in texts if t.strip())), threshold=1.0)
    out_of_scope = out_of_scope if out_of_scope is not None else unrelated_prompts()
    best_in, best_out = scope.scores(in_scope), scope.scores(out_of_scope)
    threshold = threshold_between(best_in, best_out, MARGIN) if len(best_out) else 0.5
    scope.threshold = round(threshold, 4)
    scope.report = {
        "in_scope": len(best_in),
        "in_scope_passed": round(float((best_in >= scope.threshold).mean()), 4) if len(best_in) else None,
        "out_of_scope": len(best_out),
        "out_of_scope_passed": round(float((best_out >= scope.threshold).mean()), 4) if len(best_out) else None,
    }
    return scope


def scope_for_facts(facts, include_paraphrases: bool = False) -> AdapterScope:
    """The scope of a knowledge-pack adapter: its questions and facts, calibrated with templated rewordings."""
    from lorebook.teach.render import QUESTION_TEMPLATES, lower_first

    texts = [text for fact in facts
             for text in (fact.question, fact.fact, *(fact.paraphrases if include_paraphrases else []))]
    reworded = [template.format(q=fact.question, lq=lower_first(fact.question))
                for fact in facts for template in QUESTION_TEMPLATES]
    return calibrate(texts, reworded)
