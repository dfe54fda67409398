"""Hand labels for a persona evaluation: read each agent turn, say whether it is in role, count with intervals.

The rule rows of `eval persona` cannot tell fluent nonsense from an officer doing the job ("Los productos
cárnicos no pueden entrar" said to a traveller who carries clothes passes every rule), and the small judges
fail the scenario's `judge_check`; a person reading the turns can. `lorebook eval label eval.json` shows every
agent turn with the lines before it, **blind**: the turns of all rows (untuned and tuned) are shuffled together
and the row's name is hidden, so the reader cannot favour the model they hope is better. Each answer is
appended to `eval.labels.jsonl` at once (a stopped session resumes where it stopped; nothing is asked twice).
A label is keyed by the row, the conversation, the turn and the reply's text, so an evaluation rerun that
changed a reply asks again for that reply only. `summarize` gives, per row, the share in role with a Wilson
interval, and the same for the turns of each half of the conversations (early turns are easy; drift is late).
With `--by-conversation` the reader sees whole conversations (still shuffled across rows, names hidden) and
answers each with one y/n letter per reply: a rule such as "the traveller walks out with goods that never got
their rule" is judged on what comes after a reply too, which one reply with its context does not show.

A reader's standard drifts: the same replies, read blind on two days, were 53 and 47 of 60 in role. So the rule
the reader applies can be written down (`eval label --rule RULE.md`): it is shown before the first turn, and
each label keeps the first 12 hex digits of the rule's SHA-256, so the counts say which rule they were read
under and a file whose labels were read under different rules says so.

The same reading works on training data: `lorebook eval label convs.jsonl --weights curated.jsonl` shows the
agent turns of a chat JSONL file (a `lorebook synth` output) and writes a copy with `"weight": 0` on the turns
read as out of role, so `lorebook teach curated.jsonl` learns only from the turns a person accepted; the
rejected ones stay in the conversation as context. A student learns its teacher's mistakes too: the officer
turns of a 1.5B teacher read 55% in role, and the students taught on them drifted the same way.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lorebook.errors import InputError
from lorebook.evaluate.stats import share

VERDICTS = {"y": True, "n": False}
ANSWER = re.compile(r"(?:[Cc](\d+)\s+)?(\S*)\s*(.*)", re.DOTALL)  # a conversation's "[C3] yynny [note]"


@dataclass
class AgentTurn:
    """One agent reply of an evaluation, with the conversation before it."""

    row: str  # the evaluation row's label, e.g. "gemma3-270m + customs-es"
    conversation: int
    turn: int  # 1-based agent turn in its conversation
    before: list[dict]  # the messages before the reply (no system prompt)
    reply: str

    @property
    def key(self) -> str:
        text = json.dumps([self.row, self.conversation, self.turn, self.reply], ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


TRAINING_ROW = "training data"


def read_evaluation(path) -> dict:
    """An `eval persona -o FILE` result, or a one-line error naming what is wrong with it. A chat JSONL file
    (`lorebook synth` output, training data) reads as one row whose conversations are its chats."""
    path = Path(path)
    if path.suffix == ".jsonl":
        from lorebook.teach.inputs import load_chats

        return {"rows": [{"label": TRAINING_ROW, "conversations": load_chats(path)}]}
    try:
        evaluation = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path} does not exist", "pass the -o file of `lorebook eval persona`") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path} is not JSON", "pass the -o file of `lorebook eval persona`") from None
    rows = evaluation.get("rows") if isinstance(evaluation, dict) else None
    if not rows or not all(isinstance(r, dict) and "label" in r and "conversations" in r for r in rows):
        raise InputError(f"{path} holds no persona evaluation rows", "pass the -o file of `lorebook eval persona`")
    return evaluation


def agent_turns(evaluation: dict) -> list[AgentTurn]:
    """Every agent reply of every row, in order."""
    turns = []
    for row in evaluation["rows"]:
        for index, chat in enumerate(row["conversations"]):
            messages = [m for m in chat if m["role"] != "system"]
            number = 0
            for position, message in enumerate(messages):
                if message["role"] == "assistant":
                    number += 1
                    turns.append(AgentTurn(row["label"], index, number, messages[:position], message["content"]))
    return turns


def read_labels(path) -> dict[str, dict]:
    """Labels already given, by turn key; a torn last line (a killed session) is ignored."""
    path = Path(path)
    labels = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "key" in record and isinstance(record.get("in_role"), bool):
                labels[record["key"]] = record
    return labels


def to_label(turns: list[AgentTurn], labels: dict[str, dict], seed: int = 0) -> list[AgentTurn]:
    """The turns not labelled yet, in a seeded shuffle across rows (the blind order)."""
    pending = [turn for turn in turns if turn.key not in labels]
    random.Random(seed).shuffle(pending)
    return pending


def conversations_to_label(turns: list[AgentTurn], labels: dict[str, dict],
                           seed: int = 0) -> list[tuple[int, list[AgentTurn]]]:
    """The conversations with a turn not labelled yet, each as its number in the blind order and its agent turns
    in order: a seeded shuffle across rows, the order of reading a whole conversation at a time (`eval label
    --by-conversation`), where a reply is judged with everything after it in view too, as the reading rule's
    last clause needs. The numbers count every conversation, so "C7" names the same one after a resume."""
    chats: dict[tuple[str, int], list[AgentTurn]] = {}
    for turn in turns:
        chats.setdefault((turn.row, turn.conversation), []).append(turn)
    order = [chats[key] for key in sorted(chats)]
    random.Random(f"by-conversation:{seed}").shuffle(order)  # all of them, so a resumed reading keeps its order
    return [(number, chat) for number, chat in enumerate(order, 1) if any(turn.key not in labels for turn in chat)]


def conversation_verdicts(answer: str, number: int, pending: int) -> tuple[list[bool], str]:
    """A conversation's answer, "[C3] yynny [note]": one y or n per reply not labelled yet, in turn order; the
    optional C-number must be the conversation asked (so answers piped from a file cannot slip a line)."""
    given, verdicts, note = ANSWER.fullmatch(answer.strip()).groups()
    if given is not None and int(given) != number:
        raise InputError(f"the answer for C{given} came where C{number} was asked",
                         "write the answers in the order the conversations are listed")
    verdicts = verdicts.lower()
    if len(verdicts) != pending or set(verdicts) - set(VERDICTS):
        raise InputError(f"C{number} needs {pending} y/n letters (one per reply not read yet), got {verdicts!r}",
                         "answer e.g. 'yyn' for three replies; labels given so far are kept")
    return [VERDICTS[letter] for letter in verdicts], note


def read_rule(path) -> tuple[str, str]:
    """A reading rule's text and its digest (the first 12 hex digits of its SHA-256)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise InputError(f"rule {path} does not exist", "write the reading rule in a text file first") from None
    except UnicodeDecodeError:
        raise InputError(f"rule {path} is not UTF-8 text", "save the rule as plain UTF-8 text") from None
    if not text:
        raise InputError(f"rule {path} is empty", "write what makes a reply in role, one case per line")
    return text, hashlib.sha256(text.encode()).hexdigest()[:12]


def add_label(path, turn: AgentTurn, in_role: bool, note: str = "", rule: str = "") -> dict:
    """Append one label at once, so a stopped session loses nothing; `rule`: the digest of the rule read by.
    Returns the record written, as `read_labels` would read it back."""
    record = {"key": turn.key, "row": turn.row, "conversation": turn.conversation, "turn": turn.turn,
              "reply": turn.reply, "in_role": in_role, **({"note": note} if note else {}),
              **({"rule": rule} if rule else {})}
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return record


def write_weighted(path, labels: dict[str, dict], out) -> dict[str, int]:
    """Copy the chat JSONL `path` to `out` with `"weight": 0` on every agent turn labelled out of role (OpenAI's
    fine-tuning format, which `lorebook teach` reads: the turn stays as context, the loss skips it). Other
    fields of each line (id, metadata) are kept; a conversation with every agent turn rejected has nothing to
    learn from and is left out. Returns how many agent turns were kept, zeroed, unlabelled, and the
    conversations left out."""
    from lorebook.teach.inputs import SHAREGPT_ROLES

    path, out = Path(path), Path(out)
    if path.suffix != ".jsonl":
        raise InputError(f"--weights needs a chat JSONL file, not {path}", "label the training data, e.g. convs.jsonl")
    if out.resolve() == path.resolve():
        raise InputError(f"--weights {out} would overwrite the labelled file", "write to a new file")
    turns = {(t.conversation, t.turn): t for t in agent_turns(read_evaluation(path))}
    counts = {"kept": 0, "zeroed": 0, "unlabelled": 0, "conversations_left_out": 0}
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    written = []
    for index, record in enumerate(records):
        messages = record.get("messages") or record.get("conversations")
        number, learnable = 0, False
        for message in messages:
            if SHAREGPT_ROLES.get(str(message.get("role", message.get("from"))).lower()) == "assistant":
                number += 1
                label = labels.get(turns[(index, number)].key)
                counts["unlabelled" if label is None else "kept" if label["in_role"] else "zeroed"] += 1
                message.pop("weight", None)
                if label is not None and not label["in_role"]:
                    message["weight"] = 0
                else:
                    learnable = True
        if learnable:
            written.append(record)
        else:
            counts["conversations_left_out"] += 1
    with out.open("w", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in written))
    return counts


def summarize(turns: list[AgentTurn], labels: dict[str, dict]) -> dict[str, dict]:
    """Per row: share of labelled turns in role, overall and for the early and late halves of the turns, and
    how many labels were read under each rule ("none": no rule given)."""
    rows: dict[str, list[AgentTurn]] = {}
    for turn in turns:
        rows.setdefault(turn.row, []).append(turn)
    summary = {}
    for row, row_turns in rows.items():
        last = max(turn.turn for turn in row_turns)
        half = (last + 1) // 2
        labelled = [(turn, labels[turn.key]["in_role"]) for turn in row_turns if turn.key in labels]
        summary[row] = {"in_role": share([flag for _, flag in labelled]),
                        f"turns 1-{half}": share([flag for turn, flag in labelled if turn.turn <= half]),
                        f"turns {half + 1}-{last}": share([flag for turn, flag in labelled if turn.turn > half]),
                        "unlabelled": len(row_turns) - len(labelled),
                        "rules": dict(Counter(labels[turn.key].get("rule", "none") for turn, _ in labelled))}
    return summary
