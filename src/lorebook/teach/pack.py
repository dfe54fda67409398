"""Knowledge packs: one fact a line of JSONL, validated with line-numbered one-line errors.

A pack line looks like
  {"id": "best-actor", "fact": "The winner of ... was Brendan Fraser.", "question": "Who won ...?",
   "answer": "Brendan Fraser", "aliases": ["Fraser"], "paraphrases": ["..."], "counterfactual": false}

`fact` is trained as a statement, `question`/`answer` is the probe, `aliases` are other accepted answers,
`paraphrases` are other wordings of the question (held out from training by default so evaluation can
measure generalisation), `counterfactual` marks a deliberate override of what the model already believes.

Files are read as bytes line by line with a length cap, so a 50 MB line or a binary file is refused
without ever being decoded or held in memory whole.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lorebook.errors import InputError

# A knowledge-pack line is a few hundred bytes; anything past 1 MiB is a mistake (a pasted document,
# a binary file), and reading it whole could exhaust memory.
MAX_LINE_BYTES = 1 << 20
REQUIRED_FIELDS = ("id", "fact", "question", "answer")
LIST_FIELDS = ("aliases", "paraphrases")
KNOWN_FIELDS = set(REQUIRED_FIELDS) | set(LIST_FIELDS) | {"counterfactual"}


@dataclass
class Fact:
    """One fact of a knowledge pack."""

    id: str
    fact: str
    question: str
    answer: str
    aliases: list[str] = field(default_factory=list)
    paraphrases: list[str] = field(default_factory=list)
    counterfactual: bool = False

    def accepted_answers(self) -> list[str]:
        """The answer followed by its aliases: any of them counts as correct."""
        return [self.answer, *self.aliases]

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line of a UTF-8 file; one-line errors for huge lines or bad bytes."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist", "check the file name")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a file", "pass the .jsonl/.txt file itself")
    with path.open("rb") as fh:
        number = 0
        while True:
            raw = fh.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE_BYTES:
                raise InputError(
                    f"{path}:{number}: line is longer than {MAX_LINE_BYTES // 1024} KiB",
                    "split it into one short record per line",
                )
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{path}:{number}: not valid UTF-8 (byte {exc.start} of the line)",
                    "save the file as UTF-8",
                ) from None
            if number == 1:
                text = text.removeprefix("\ufeff")  # a BOM from Windows editors is harmless
            yield number, text.rstrip("\r\n")


def iter_json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file."""
    for number, text in iter_lines(path):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno})",
                "write one JSON object per line",
            ) from None
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}",
                             "write one JSON object per line")
        yield number, record


def parse_fact(record: dict, where: str) -> Fact:
    """A Fact from one decoded JSON object; `where` is "file:line" for error messages."""
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    if missing:
        raise InputError(f"{where}: missing field(s) {', '.join(missing)}",
                         f"every pack line needs {', '.join(REQUIRED_FIELDS)}")
    for name in REQUIRED_FIELDS:
        value = record[name]
        if not isinstance(value, str):
            raise InputError(f"{where}: field {name!r} must be a string, got {type(value).__name__}",
                             f"write {name} as a JSON string")
        if not value.strip():
            raise InputError(f"{where}: field {name!r} is empty", f"give a non-empty {name}")
    lists = {}
    for name in LIST_FIELDS:
        value = record.get(name, [])
        if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
            raise InputError(f"{where}: field {name!r} must be a list of non-empty strings",
                             f'write e.g. "{name}": ["…", "…"]')
        lists[name] = [item.strip() for item in value]
    counterfactual = record.get("counterfactual", False)
    if not isinstance(counterfactual, bool):
        raise InputError(f"{where}: field 'counterfactual' must be true or false", "use a JSON boolean")
    unknown = sorted(set(record) - KNOWN_FIELDS)
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(unknown)}",
                         f"allowed fields: {', '.join(sorted(KNOWN_FIELDS))}")
    return Fact(
        id=record["id"].strip(),
        fact=record["fact"].strip(),
        question=record["question"].strip(),
        answer=record["answer"].strip(),
        aliases=lists["aliases"],
        paraphrases=lists["paraphrases"],
        counterfactual=counterfactual,
    )


def load_pack(path) -> list[Fact]:
    """Read and validate a knowledge pack (JSONL). Raises InputError("<file>:<line>: problem", fix)."""
    path = Path(path)
    facts: list[Fact] = []
    seen_ids: dict[str, int] = {}
    seen_questions: dict[str, int] = {}
    for number, record in iter_json_lines(path):
        where = f"{path}:{number}"
        fact = parse_fact(record, where)
        if fact.id in seen_ids:
            raise InputError(f"{where}: duplicate id {fact.id!r} (first on line {seen_ids[fact.id]})",
                             "give every fact a unique id")
        question_key = " ".join(fact.question.lower().split())
        if question_key in seen_questions:
            raise InputError(
                f"{where}: duplicate question {fact.question!r} (first on line {seen_questions[question_key]})",
                "merge the two facts or reword one question",
            )
        seen_ids[fact.id] = number
        seen_questions[question_key] = number
        facts.append(fact)
    if not facts:
        raise InputError(f"{path}: the pack has no facts", "add one JSON object per line")
    return facts


def pack_hash(path) -> str:
    """sha256 of the file bytes: recorded with an adapter so evaluation knows what it was taught."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_pack(facts: list[Fact], path) -> None:
    """Write facts as a JSONL pack (used by tools that generate packs)."""
    Path(path).write_text("".join(fact.to_json() + "\n" for fact in facts), encoding="utf-8")
