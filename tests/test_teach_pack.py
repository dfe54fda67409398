"""Knowledge-pack and input validation: every bad input gets a one-line error with file and line."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from lorebook.errors import InputError
from lorebook.teach.inputs import detect_kind, load_chats, load_qa_text, load_training_input
from lorebook.teach.pack import MAX_LINE_BYTES, Fact, load_pack

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
GOOD = {"id": "a", "fact": "The sky on Zorbo is green.", "question": "What colour is the sky on Zorbo?",
        "answer": "green", "aliases": ["Green"], "paraphrases": ["On Zorbo, the sky has which colour?"]}


def write_lines(path: Path, records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_oscars_pack_is_complete():
    facts = load_pack(EXAMPLES / "oscars-2023.jsonl")
    assert len(facts) == 23  # every competitive category of the 95th Academy Awards
    assert all(len(f.paraphrases) >= 3 for f in facts)
    by_id = {f.id: f for f in facts}
    assert by_id["best-actor"].answer == "Brendan Fraser"
    assert by_id["best-picture"].answer == "Everything Everywhere All at Once"
    assert all(f.answer.lower() in f.fact.lower() for f in facts)


def test_good_pack_loads(tmp_path):
    facts = load_pack(write_lines(tmp_path / "p.jsonl", [GOOD, "", {**GOOD, "id": "b", "question": "Other?"}]))
    assert facts[0] == Fact(**GOOD)
    assert facts[0].accepted_answers() == ["green", "Green"]
    assert len(facts) == 2


@pytest.mark.parametrize(
    "records, message",
    [
        ([GOOD, {k: v for k, v in GOOD.items() if k != "answer"}], ":2: missing field(s) answer"),
        ([{**GOOD, "answer": "  "}], ":1: field 'answer' is empty"),
        ([GOOD, {**GOOD, "question": "Different?"}], ":2: duplicate id 'a' (first on line 1)"),
        ([GOOD, {**GOOD, "id": "b"}], ":2: duplicate question"),
        ([GOOD, "{not json"], ":2: invalid JSON"),
        (["[1, 2]"], ":1: expected a JSON object"),
        ([{**GOOD, "aliases": "green"}], ":1: field 'aliases' must be a list"),
        ([{**GOOD, "counterfactual": "yes"}], ":1: field 'counterfactual' must be true or false"),
        ([{**GOOD, "anwser": "x"}], ":1: unknown field(s) anwser"),
        ([], "the pack has no facts"),
    ],
)
def test_bad_packs_name_file_and_line(tmp_path, records, message):
    path = write_lines(tmp_path / "bad.jsonl", records)
    with pytest.raises(InputError) as info:
        load_pack(path)
    assert message in str(info.value)
    assert str(path) in str(info.value) and info.value.fix
    assert "\n" not in str(info.value)


def test_non_utf8_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + '{"id": "caf\xe9"}'.encode("latin-1") + b"\n")
    with pytest.raises(InputError, match=r":2: not valid UTF-8"):
        load_pack(path)


def test_huge_line_is_refused_without_reading_it_whole(tmp_path):
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as fh:  # a 50 MB line
        fh.write(b'{"id": "x", "fact": "' + b"a" * (50 * 1024 * 1024) + b'"}\n')
    with pytest.raises(InputError, match=rf":1: line is longer than {MAX_LINE_BYTES // 1024} KiB"):
        load_pack(path)


def test_other_input_kinds(tmp_path):
    chat = write_lines(tmp_path / "chat.jsonl", [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"conversations": [{"from": "human", "value": "hola"}, {"from": "gpt", "value": "buenas"}]},
    ])
    assert detect_kind(chat) == "chat"
    chats = load_chats(chat)
    assert chats[1] == [{"role": "user", "content": "hola"}, {"role": "assistant", "content": "buenas"}]
    qa = tmp_path / "qa.txt"
    qa.write_text("Question: Who built Zorbo?\nAnswer: Ada\n\nQuestion: When?\nAnswer: 1901\n")
    assert detect_kind(qa) == "qa-text"
    assert [(f.question, f.answer) for f in load_qa_text(qa)] == [("Who built Zorbo?", "Ada"), ("When?", "1901")]
    statements = tmp_path / "s.txt"
    statements.write_text("Zorbo has green skies.\n")
    assert detect_kind(statements) == "statements"
    assert detect_kind(write_lines(tmp_path / "p.jsonl", [GOOD])) == "pack"
    qa_as_statements = load_training_input(qa, SimpleNamespace(eos_token="</s>"), kind="statements")
    assert qa_as_statements.kind == "statements" and len(qa_as_statements.examples) == 4


@pytest.mark.parametrize(
    "text, message",
    [
        ("Question: A?\nQuestion: B?\nAnswer: x\n", ":1: question has no answer"),
        ("Question: A?\nAnswer:\n", ":2: empty answer"),
        ("Answer: x\n", ":1: answer without a question"),
        ("Question: A?\nAnswer: x\nbanana\n", ":3: expected 'Question: …' or 'Answer: …'"),
    ],
)
def test_bad_qa_text(tmp_path, text, message):
    path = tmp_path / "qa.txt"
    path.write_text(text)
    with pytest.raises(InputError, match=message.replace("?", r"\?")):
        load_qa_text(path)


def test_bad_chat(tmp_path):
    path = write_lines(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": "only a question"}]}])
    with pytest.raises(InputError, match=":1: the chat has no assistant turn"):
        load_chats(path)
    path = write_lines(tmp_path / "d.jsonl", [{"messages": [{"role": "robot", "content": "x"}]}])
    with pytest.raises(InputError, match=":1: unknown role 'robot'"):
        load_chats(path)
    rejected = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0}]
    with pytest.raises(InputError, match=":1: the chat has no assistant turn"):
        load_chats(write_lines(tmp_path / "e.jsonl", [{"messages": rejected}]))
    for bad in ({"role": "user", "content": "q", "weight": 0}, {"role": "assistant", "content": "a", "weight": 0.5}):
        with pytest.raises(InputError, match="'weight' must be 0 or 1"):
            load_chats(write_lines(tmp_path / "f.jsonl", [{"messages": [bad, {"role": "assistant", "content": "b"}]}]))
    kept = load_chats(write_lines(tmp_path / "g.jsonl", [{"messages": rejected + [{"role": "user", "content": "r"},
                                                                                  {"role": "assistant", "content": "c"}]}]))
    assert kept[0][1]["weight"] == 0 and "weight" not in kept[0][3]
