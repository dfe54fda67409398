"""The generator after the agent's decision and with scripted lines: --min-turns, --followups,
--scripted-answers and --scripted-agent."""

from __future__ import annotations

import pytest

from lorebook.synth.runner import SynthConfig, run_synth
from lorebook.synth.scenario import load_scenario
from synth_fakes import EXAMPLE, FakeTeacher, lines, own_turn_count


class AnswersAfterDecision(FakeTeacher):
    """The fake officer admits at its fourth turn, then says `answers` in turn (formatted with the id)."""

    def __init__(self, answers: list[str]):
        super().__init__()
        self.answers = answers

    def generate(self, message_lists, options, key="", ids=None):
        replies = super().generate(message_lists, options, key, ids)
        for n, (i, messages) in enumerate(zip(ids, message_lists)):
            own = own_turn_count(messages)
            if "aduanas" in messages[0]["content"] and own >= 4:
                replies[n] = self.answers[own - 4].format(i=i)
        return replies


def test_min_turns_keeps_a_conversation_going_after_the_decision(tmp_path):
    after = ["El formulario de la aduana está en la ventanilla {i}.", "Su equipaje sale por la cinta número {i}."]
    scenario = load_scenario(EXAMPLE)
    out = tmp_path / "convs.jsonl"
    run_synth(scenario, SynthConfig(n=2, turns=12, batch_size=2, min_turns=12, dedup=1.0), out,
              teacher=AnswersAfterDecision(after), progress=False)
    for record in lines(out):
        metadata = record["metadata"]
        assert metadata["decided"] == "agent:admitted" and metadata["ended_by"] == "max_turns"
        assert len(metadata["turns"]) == 12 and "cinta" in metadata["turns"][-1]["text"]
    early = run_synth(scenario, SynthConfig(n=2, turns=12, batch_size=2, dedup=1.0), tmp_path / "early.jsonl",
                      teacher=FakeTeacher(), progress=False)
    assert early["ended_by"] == {"agent:admitted": 2}
    assert all("decided" not in r["metadata"] for r in lines(tmp_path / "early.jsonl"))
    from lorebook.errors import InputError
    with pytest.raises(InputError, match="--min-turns 13"):
        run_synth(scenario, SynthConfig(n=1, turns=12, min_turns=13), tmp_path / "x.jsonl", teacher=FakeTeacher(),
                  progress=False)


def test_followups_script_the_traveller_after_the_decision(tmp_path):
    scenario = load_scenario(EXAMPLE)
    answers = ["La cinta de equipajes está a la derecha, número {i}.", "Sí, guarde el formulario {i}.",
               "El taxi está en la salida {i}."]
    teacher = AnswersAfterDecision(answers)
    out = tmp_path / "convs.jsonl"
    report = run_synth(scenario, SynthConfig(n=2, turns=16, batch_size=2, followups=3, dedup=1.0), out,
                       teacher=teacher, progress=False)
    assert report["ended_by"] == {"agent:admitted": 2}
    pool = set(scenario.traveller.followups)
    for record in lines(out):
        metadata = record["metadata"]
        turns = metadata["turns"]
        assert metadata["decided"] == "agent:admitted" and len(turns) == 8 + 6 and turns[-1]["role"] == "agent"
        said_after = [t["text"] for t in turns[8:] if t["role"] == "traveller"]
        assert len(said_after) == 3 and set(said_after) <= pool  # scripted, no teacher call
        assert any(phrase in said_after[-1].lower() for phrase in scenario.traveller.closings["farewell"])
    assert lines(out)[0]["metadata"]["turns"][8:] != lines(out)[1]["metadata"]["turns"][8:]
    from lorebook.errors import InputError
    with pytest.raises(InputError, match="--followups 99"):
        run_synth(scenario, SynthConfig(n=1, followups=99), tmp_path / "x.jsonl", teacher=teacher, progress=False)


def test_scripted_answers_answer_the_agents_questions_without_a_teacher_call(tmp_path):
    from lorebook.synth.scenario import fill

    scenario = load_scenario(EXAMPLE)
    teacher = FakeTeacher()
    config = SynthConfig(n=2, turns=10, batch_size=2, scripted_answers=True, dedup=1.0)
    run_synth(scenario, config, tmp_path / "convs.jsonl", teacher=teacher, progress=False)
    assert teacher.calls == 4  # the agent's four turns; the traveller's answers are scripted
    pools = [answer.lines for answer in scenario.traveller.answers]
    records = lines(tmp_path / "convs.jsonl")
    for record in records:
        attributes = record["metadata"]["attributes"]
        said = [t["text"] for t in record["metadata"]["turns"][2::2]]
        # asked the purpose, the days, then what is in the luggage: answered from those three pools in turn
        for text, pool in zip(said, (pools[1], pools[2], pools[4])):
            assert text in {fill(line, attributes) for line in pool}
    again = tmp_path / "again.jsonl"
    run_synth(scenario, config, again, teacher=FakeTeacher(), progress=False)
    assert [r["metadata"]["turns"] for r in lines(again)] == [r["metadata"]["turns"] for r in records]
    import dataclasses

    from lorebook.errors import InputError
    silent = dataclasses.replace(scenario, traveller=dataclasses.replace(scenario.traveller, answers=[]))
    with pytest.raises(InputError, match="--scripted-answers needs traveller.answers"):
        run_synth(silent, config, tmp_path / "x.jsonl", teacher=FakeTeacher(), progress=False)


def test_scripted_agent_and_answers_write_whole_interviews_without_a_teacher(tmp_path):
    """Both sides from the scenario's lines (M2M-style outlines): no teacher call, every agent turn one of the
    agenda's or reactions' lines, the decision and the follow-ups in place, the same again on a rerun."""
    from lorebook.synth.dialogue import closing

    scenario = load_scenario(EXAMPLE)
    teacher = FakeTeacher(die_after_calls=0)
    config = SynthConfig(n=6, turns=24, batch_size=3, followups=5, scripted_answers=True, scripted_agent=True)
    report = run_synth(scenario, config, tmp_path / "convs.jsonl", teacher=teacher, progress=False)
    assert report["ended_by"] == {"agent:admitted": 6} and report["kept"] == 6
    written = {line for step in scenario.agent.agenda for line in step.lines}
    written |= {line for answer in scenario.agent.answers for line in answer.lines}
    for record in lines(tmp_path / "convs.jsonl"):
        agent = [t["text"] for t in record["metadata"]["turns"] if t["role"] == "agent"]
        assert len(agent) == len(set(agent)) and closing(scenario.agent, agent[0]) is None
        assert all(text.startswith(tuple(line.split("{step}")[0].strip() or line for line in written)) for text in agent)
    again = tmp_path / "again.jsonl"
    run_synth(scenario, config, again, teacher=FakeTeacher(die_after_calls=0), progress=False)
    assert lines(again) == lines(tmp_path / "convs.jsonl")
    import dataclasses

    from lorebook.errors import InputError
    bare = dataclasses.replace(scenario, agent=dataclasses.replace(
        scenario.agent, answers=[], agenda=[step._replace(lines=[]) for step in scenario.agent.agenda]))
    with pytest.raises(InputError, match="--scripted-agent needs agent.answers"):
        run_synth(bare, config, tmp_path / "x.jsonl", teacher=FakeTeacher(), progress=False)


def test_a_followup_waits_for_the_answer_to_the_agents_question(tmp_path):
    """Goods mentioned after the decision ("Una cosa más: traigo …") get their rule; when that rule is a question
    ("¿Tiene la receta?") the traveller answers it before its next followup, and a statement naming something
    the traveller answers ("Sí, tome su pasaporte.") does not hold the followups up."""
    import dataclasses

    from lorebook.synth.dialogue import asks_question

    scenario = load_scenario(EXAMPLE)
    assert asks_question(scenario.traveller, "¿Tiene la receta, por favor?")
    assert not asks_question(scenario.traveller, "Sí, tome su pasaporte.")
    late_goods = dataclasses.replace(scenario, traveller=dataclasses.replace(
        scenario.traveller, followups=["Una cosa más: traigo medicamentos.", "Adiós."]))
    config = SynthConfig(n=4, turns=24, batch_size=2, followups=2, scripted_answers=True, scripted_agent=True)
    run_synth(late_goods, config, tmp_path / "late.jsonl", teacher=FakeTeacher(die_after_calls=0), progress=False)
    prescriptions = next(answer.lines for answer in scenario.traveller.answers if "receta" in answer.asks)
    for record in lines(tmp_path / "late.jsonl"):
        texts = [turn["text"] for turn in record["metadata"]["turns"]]
        at = texts.index("Una cosa más: traigo medicamentos.")
        assert "receta" in texts[at + 1] and texts[at + 2] in prescriptions and texts[at + 4] == "Adiós."


def test_a_followup_waits_for_the_answer_to_a_held_rule(tmp_path):
    """A rule that `holds` goods pending is a statement, yet the traveller answers it before its next followup
    (going on to "Adiós." taught the persona to show the way out after a rule); without `holds` it does not."""
    import dataclasses

    scenario = load_scenario(EXAMPLE)
    meat = next(answer for answer in scenario.agent.answers if "jamon" in answer.asks)
    held = [answer._replace(holds=True) if answer is meat else answer for answer in scenario.agent.answers]
    config = SynthConfig(n=4, turns=24, batch_size=2, followups=2, scripted_answers=True, scripted_agent=True)
    reactions = next(answer.lines for answer in scenario.traveller.answers if "dejar" in answer.asks)
    for agent, waits in ((dataclasses.replace(scenario.agent, answers=held), True), (scenario.agent, False)):
        late_goods = dataclasses.replace(scenario, agent=agent, traveller=dataclasses.replace(
            scenario.traveller, followups=["Una cosa más: traigo un jamón.", "Adiós."]))
        out = tmp_path / f"held-{waits}.jsonl"
        run_synth(late_goods, config, out, teacher=FakeTeacher(die_after_calls=0), progress=False)
        for record in lines(out):
            texts = [turn["text"] for turn in record["metadata"]["turns"]]
            at = texts.index("Una cosa más: traigo un jamón.")
            assert texts[at + 1] in meat.lines
            assert (texts[at + 2] in reactions and texts[at + 4] == "Adiós.") if waits else texts[at + 2] == "Adiós."


def test_late_answers_make_the_agent_ask_again_in_the_outlines(tmp_path):
    """Outlines with --late-answers 1: the stay-and-address question gets the stay alone, the address comes in
    answer to the declaration question, and the officer asks the declaration again (one of the step's `again`
    lines); the flag is refused out of range, without --scripted-answers, or with an `again` line the scripted
    traveller has no answer to."""
    import dataclasses

    from lorebook.errors import InputError
    from lorebook.synth.scenario import fill
    from lorebook.synth.topics import begins_any, normalize_words

    scenario = load_scenario(EXAMPLE)
    declaration = next(step for step in scenario.agent.agenda if "declar" in step.done)
    pools = {answer.asks[0]: answer.lines for answer in scenario.traveller.answers}
    config = SynthConfig(n=6, turns=26, batch_size=3, followups=5, scripted_answers=True, scripted_agent=True,
                         late_answers=1.0)
    run_synth(scenario, config, tmp_path / "late.jsonl", teacher=FakeTeacher(die_after_calls=0), progress=False)
    asked_again = 0
    for record in lines(tmp_path / "late.jsonl"):
        turns, attributes = record["metadata"]["turns"], record["metadata"]["attributes"]
        stays, addresses = ({fill(line, attributes) for line in pools[name]} for name in ("tiempo", "aloj"))
        for n, turn in enumerate(turns[:-3]):
            words = normalize_words(turn["text"])
            if turn["role"] == "agent" and begins_any(words, ("qued",)) and begins_any(words, ("aloj",)):
                assert turns[n + 1]["text"] in stays and turns[n + 3]["text"] in addresses
                assert begins_any(normalize_words(turns[n + 2]["text"]), declaration.done)
                assert turns[n + 4]["text"] in declaration.again
                asked_again += 1
    assert asked_again >= 3  # the officer asked both at once in three of the six
    plain = dataclasses.replace(config, late_answers=0.0)
    run_synth(scenario, plain, tmp_path / "plain.jsonl", teacher=FakeTeacher(die_after_calls=0), progress=False)
    assert lines(tmp_path / "plain.jsonl") != lines(tmp_path / "late.jsonl")
    for bad, message in ((1.5, "out of range"), (0.5, "needs --scripted-answers")):
        with pytest.raises(InputError, match=message):
            run_synth(scenario, SynthConfig(n=1, late_answers=bad), tmp_path / "x.jsonl", teacher=FakeTeacher(),
                      progress=False)
    unanswered = [step._replace(again=("¿Y qué trae en la maleta?",)) if step is declaration else step
                  for step in scenario.agent.agenda]  # no traveller.answers entry asks "maleta": a teacher call
    odd = dataclasses.replace(scenario, agent=dataclasses.replace(scenario.agent, agenda=unanswered))
    with pytest.raises(InputError, match=r"again line '¿Y qué trae en la maleta\?' asks nothing traveller.answers"):
        run_synth(odd, config, tmp_path / "x.jsonl", teacher=FakeTeacher(), progress=False)
