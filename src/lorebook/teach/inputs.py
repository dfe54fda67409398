"""Read any accepted training input into facts (knowledge packs) and ready examples (everything else).

Accepted files:
  *.jsonl with id/fact/question/answer        a knowledge pack (see pack.py)
  *.jsonl with {"messages": [...]}            OpenAI-style chats (persona / conversation fine-tunes); an
                                              assistant turn with "weight": 0 is context, not a target
  *.jsonl with {"conversations": [...]}       ShareGPT chats (from: human/gpt/system, value)
  *.txt with "Question: …" / "Answer: …" lines question/answer pairs, treated as facts
  *.txt otherwise                              one statement a line
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lorebook.errors import InputError
from lorebook.teach.pack import Fact, iter_json_lines, iter_lines, load_pack
from lorebook.teach.render import Example, render_chat, render_statement

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "chatgpt": "assistant", "bing": "assistant"}


@dataclass
class TrainingInput:
    """What a file contributes: facts to render by --formats, and examples used as they are."""

    kind: str
    facts: list[Fact] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)


def detect_kind(path: Path) -> str:
    """'pack', 'chat', 'qa-text' or 'statements', from the extension and the first record."""
    if path.suffix.lower() in (".jsonl", ".json"):
        for _, record in iter_json_lines(path):
            if "messages" in record or "conversations" in record:
                return "chat"
            return "pack"
        raise InputError(f"{path}: the file is empty", "add one JSON object per line")
    if path.suffix.lower() in (".txt", ".md", ""):
        for _, text in iter_lines(path):
            if text.strip():
                return "qa-text" if text.lstrip().lower().startswith("question:") else "statements"
        raise InputError(f"{path}: the file is empty", "add one statement per line")
    raise InputError(f"{path}: unsupported file type {path.suffix!r}",
                     "use a .jsonl knowledge pack or chat file, or a .txt of statements")


def load_chats(path: Path) -> list[list[dict]]:
    """Chats from OpenAI-style or ShareGPT JSONL, validated with line numbers."""
    chats = []
    for number, record in iter_json_lines(path):
        where = f"{path}:{number}"
        if "messages" in record:
            raw, role_key, text_key = record["messages"], "role", "content"
        elif "conversations" in record:
            raw, role_key, text_key = record["conversations"], "from", "value"
        else:
            raise InputError(f"{where}: no 'messages' or 'conversations' list", "write one chat per line")
        if not isinstance(raw, list) or not raw:
            raise InputError(f"{where}: the chat must be a non-empty list of turns", 'e.g. [{"role": "user", ...}]')
        messages = []
        for turn in raw:
            if not isinstance(turn, dict) or role_key not in turn or text_key not in turn:
                raise InputError(f"{where}: every turn needs {role_key!r} and {text_key!r}",
                                 f'write turns like {{"{role_key}": "user", "{text_key}": "…"}}')
            role = SHAREGPT_ROLES.get(str(turn[role_key]).lower())
            if role is None:
                raise InputError(f"{where}: unknown role {turn[role_key]!r}", "use system, user or assistant")
            if not isinstance(turn[text_key], str) or not turn[text_key].strip():
                raise InputError(f"{where}: a {role} turn is empty", "give every turn some text")
            message = {"role": role, "content": turn[text_key]}
            if "weight" in turn:
                # OpenAI's fine-tuning format: weight 0 keeps an assistant turn as context but not as a target
                if role != "assistant" or turn["weight"] not in (0, 1) or isinstance(turn["weight"], bool):
                    raise InputError(f"{where}: 'weight' must be 0 or 1 and only on assistant turns",
                                     'e.g. {"role": "assistant", "content": "…", "weight": 0}')
                message["weight"] = turn["weight"]
            messages.append(message)
        if not any(m["role"] == "assistant" and m.get("weight", 1) for m in messages):
            raise InputError(f"{where}: the chat has no assistant turn to learn from",
                             "add an assistant reply (or give one weight 1)")
        chats.append(messages)
    return chats


def load_qa_text(path: Path) -> list[Fact]:
    """`Question: …` / `Answer: …` pairs; each becomes a fact whose statement is question plus answer."""
    facts: list[Fact] = []
    question, question_line = None, 0
    for number, text in iter_lines(path):
        stripped = text.strip()
        if not stripped:
            continue
        label, _, value = stripped.partition(":")
        label, value = label.strip().lower(), value.strip()
        if label == "question":
            if question is not None:
                raise InputError(f"{path}:{question_line}: question has no answer", "add an 'Answer: …' line")
            if not value:
                raise InputError(f"{path}:{number}: empty question", "write text after 'Question:'")
            question, question_line = value, number
        elif label == "answer":
            if question is None:
                raise InputError(f"{path}:{number}: answer without a question", "put 'Question: …' first")
            if not value:
                raise InputError(f"{path}:{number}: empty answer", "write text after 'Answer:'")
            facts.append(Fact(id=f"line-{question_line}", fact=f"{question} {value}", question=question,
                              answer=value, aliases=[], paraphrases=[]))
            question = None
        else:
            raise InputError(f"{path}:{number}: expected 'Question: …' or 'Answer: …'",
                             "alternate Question: and Answer: lines")
    if question is not None:
        raise InputError(f"{path}:{question_line}: question has no answer", "add an 'Answer: …' line")
    return facts


def load_training_input(path, tokenizer, kind: str = "auto") -> TrainingInput:
    """Load any accepted input file as `kind` (auto: by its content); errors name the file and line."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist", "check the file name")
    if kind == "auto":
        kind = detect_kind(path)
    if kind == "pack":
        return TrainingInput(kind, facts=load_pack(path))
    if kind == "qa-text":
        return TrainingInput(kind, facts=load_qa_text(path))
    if kind == "chat":
        return TrainingInput(kind, examples=[render_chat(chat, tokenizer) for chat in load_chats(path)])
    examples = [render_statement(text.strip(), tokenizer) for _, text in iter_lines(path) if text.strip()]
    return TrainingInput(kind, examples=examples)
