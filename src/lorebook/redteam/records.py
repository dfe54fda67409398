"""Training records as the linter sees them: one per pack fact, chat, or text line, with its line number.

Files are read through lorebook.teach's own readers, so the linter accepts exactly what `lorebook
teach` accepts and reports the same line numbers. Each record keeps the text a model would be trained
on, split into what is asked (`prompt`) and what the model is taught to say (`target`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lorebook.errors import InputError
from lorebook.teach.inputs import detect_kind, load_chats, load_qa_text
from lorebook.teach.pack import iter_json_lines, iter_lines, parse_fact


@dataclass
class Record:
    """One training record: where it is, its id, and its texts."""

    line: int
    id: str
    prompt: str
    target: str
    extra: str = ""  # other trained text (a fact statement, paraphrases, earlier turns)
    last_line: int = 0  # the record's last line when it spans several (a Question:/Answer: pair)

    @property
    def text(self) -> str:
        return "\n".join(part for part in (self.prompt, self.target, self.extra) if part)


def _pack_records(path: Path) -> list[Record]:
    records = []
    for number, raw in iter_json_lines(path):
        fact = parse_fact(raw, f"{path}:{number}")
        records.append(Record(number, fact.id, fact.question, fact.answer,
                              "\n".join([fact.fact, *fact.paraphrases, *fact.aliases])))
    return records


def _chat_records(path: Path) -> list[Record]:
    chats = load_chats(path)  # validates every line with its own one-line errors
    numbers = [number for number, _ in iter_json_lines(path)]
    records = []
    for number, chat in zip(numbers, chats):
        # System turns are instructions by design; the linter looks at what users say and what the
        # model is taught to answer.
        turns = [m for m in chat if m["role"] != "system"]
        users = [m["content"] for m in turns if m["role"] == "user"]
        answers = [m["content"] for m in turns if m["role"] == "assistant"]
        records.append(Record(number, f"line-{number}", users[-1] if users else "", answers[-1],
                              "\n".join(users[:-1] + answers[:-1])))
    return records


def _text_records(path: Path, kind: str) -> list[Record]:
    if kind == "qa-text":
        load_qa_text(path)  # validates the Question:/Answer: pairing with teach's own errors
    records, question, question_line = [], None, 0
    for number, text in iter_lines(path):
        stripped = text.strip()
        if not stripped:
            continue
        if kind == "statements":
            records.append(Record(number, f"line-{number}", "", stripped))
            continue
        label, _, value = stripped.partition(":")
        if label.strip().lower() == "question":
            question, question_line = value.strip(), number
        elif label.strip().lower() == "answer" and question is not None:
            records.append(Record(question_line, f"line-{question_line}", question, value.strip(), last_line=number))
            question = None
    return records


def load_records(path) -> tuple[str, list[Record]]:
    """(kind, records) of any file `lorebook teach` accepts; one-line errors name the file and line."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist", "check the file name")
    kind = detect_kind(path)
    if kind == "pack":
        return kind, _pack_records(path)
    if kind == "chat":
        return kind, _chat_records(path)
    return kind, _text_records(path, kind)
