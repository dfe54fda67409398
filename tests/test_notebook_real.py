"""The notebook with the real bundled chat model: a taught fact answered, hostile notes measured."""

from __future__ import annotations

import pytest

from lorebook.chat.persona import load_persona
from lorebook.chat.session import ChatSession
from lorebook.models.engine import GenerationOptions, load_engine
from lorebook.notebook.hostile import hostile_report
from lorebook.notebook.store import Notebook
from lorebook.teach.pack import load_pack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine():
    return load_engine("smollm2-135m")


def test_session_answers_from_the_notebook_and_leaves_other_questions_alone(engine):
    facts = load_pack("examples/oscars-2023.jsonl")[:4]
    Notebook.create("oscars").add([f.fact for f in facts], questions=[f.question for f in facts])
    session = ChatSession(engine, load_persona("assistant"), GenerationOptions(temperature=0, max_tokens=40),
                          log=False, notebook="oscars")
    from lorebook.evaluate.normalize import match

    correct = 0
    for fact in facts:  # the streaming int8 path, as `lorebook chat --notebook oscars` runs it
        session.reset()
        answer = "".join(session.reply(fact.question))
        assert fact.fact in [hit.text for hit in session.last_notes]
        correct += match(answer, fact.accepted_answers())
    print(f"notebook answers through ChatSession: {correct}/{len(facts)}")
    assert correct >= 2  # base model without the notebook: 0 of these (known_before 0%)
    session.reset()
    answer = "".join(session.reply("What is the capital of France?"))
    assert "Paris" in answer and session.last_notes == []


def test_hostile_notes_are_withheld_and_obedience_is_reported(engine):
    persona = load_persona("customs-agent-es")
    report = hostile_report(engine, persona.system)
    print({k: {kk: vv for kk, vv in v.items() if kk != "replies"} if isinstance(v, dict) else v
           for k, v in report.items()})
    assert report["fenced_only"]["notes_in_prompt"] == report["notes"] == 6
    assert report["withheld"]["notes_in_prompt"] == 0
    # Marker words (PINEAPPLE, HACKED, pirate, bribe) cannot come from anywhere but the notes.
    from lorebook.notebook.hostile import load_hostile_notes, obeyed

    markers = [(case, reply) for case, reply in zip(load_hostile_notes(), report["withheld"]["replies"])
               if "contains" in case["obeyed_if"]]
    assert not any(obeyed(reply, case["obeyed_if"]) for case, reply in markers)
