"""The generator: filters, dedup, resume after a kill, Batch API file round trip, a tiny local model."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from lorebook.synth.runner import SynthConfig, run_synth, sidecar
from lorebook.synth.scenario import load_scenario
from lorebook.synth.teachers import BatchFileTeacher, BatchPending, LocalTeacher, read_results

EXAMPLE = Path(__file__).parent.parent / "examples" / "customs-checkpoint-es.yaml"
AGENT_LINES = ["¿Cuál es el motivo de su viaje a España, señor {i}?", "¿Cuántos días se va a quedar usted en {i}?",
               "¿Lleva usted algo que declarar en la maleta número {i}?", "Muy bien, puede pasar. Bienvenido a España."]


@functools.cache
def few_shot_count(side: str) -> int:
    return len(getattr(load_scenario(EXAMPLE), side).examples)


def own_turn_count(messages: list[dict]) -> int:
    """The speaker's turns so far: its assistant messages minus the scenario's few-shot examples."""
    side = "agent" if "aduanas" in messages[0]["content"] else "traveller"
    return sum(m["role"] == "assistant" for m in messages) - few_shot_count(side)


class FakeTeacher:
    """Replies that depend on the conversation id and turn, so conversations differ; optional failures."""

    name = "fake"

    def __init__(self, english_ids=(), empty_ids=(), same_for_all=False, die_after_calls=None, late_english_ids=()):
        self.english_ids, self.empty_ids = set(english_ids), set(empty_ids)
        self.late_english_ids = set(late_english_ids)  # English from the agent's third turn on
        self.same_for_all, self.die_after_calls, self.calls = same_for_all, die_after_calls, 0

    def generate(self, message_lists, options, key="", ids=None):
        self.calls += 1
        if self.die_after_calls is not None and self.calls > self.die_after_calls:
            raise KeyboardInterrupt  # a kill in the middle of a batch
        replies = []
        for conversation_id, messages in zip(ids, message_lists):
            own_turns = own_turn_count(messages)
            tag = 0 if self.same_for_all else conversation_id
            if "aduanas" in messages[0]["content"]:  # the agent's view
                if conversation_id in self.english_ids or (conversation_id in self.late_english_ids and own_turns >= 2):
                    replies.append("Please show me your passport and tell me why you are travelling today.")
                elif conversation_id in self.empty_ids:
                    replies.append("...")
                else:
                    replies.append(AGENT_LINES[min(own_turns, 3)].format(i=tag * 7 + own_turns))
            else:
                replies.append(f"Vengo por turismo, unos {tag + own_turns + 2} días, con ropa y libros número {tag}.")
        return replies


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def test_filters_report_drops_and_keep_metadata(tmp_path):
    scenario = load_scenario(EXAMPLE)
    out = tmp_path / "convs.jsonl"
    report = run_synth(scenario, SynthConfig(n=8, turns=10, batch_size=4), out,
                       teacher=FakeTeacher(english_ids={2}, empty_ids={5}), progress=False)
    assert report["drop_reasons"] == {"wrong_language": 1, "empty_turn": 1}
    kept = lines(out)
    assert [r["id"] for r in kept] == [0, 1, 3, 4, 6, 7]
    record = kept[0]
    assert record["messages"][0]["role"] == "system" and "Marta" in record["messages"][0]["content"]
    assert "Hoy eres" not in record["messages"][0]["content"]  # teacher-only hints stay out of training data
    assert set(record["metadata"]["attributes"]) >= {"nationality", "mood", "strictness"}
    assert record["metadata"]["ended_by"] == "agent:admitted" and len(record["metadata"]["turns"]) == 8
    assert {r["reason"] for r in lines(sidecar(out, "drops.jsonl"))} == {"wrong_language", "empty_turn"}


def test_a_late_bad_turn_is_trimmed_not_dropped(tmp_path):
    scenario = load_scenario(EXAMPLE)
    out = tmp_path / "convs.jsonl"
    report = run_synth(scenario, SynthConfig(n=4, turns=10, batch_size=4), out,
                       teacher=FakeTeacher(english_ids={1}, late_english_ids={2}), progress=False)
    assert report["drop_reasons"] == {"wrong_language": 1} and report["trimmed"] == {"wrong_language": 1}
    trimmed = next(r for r in lines(out) if r["id"] == 2)
    assert trimmed["metadata"]["ended_by"] == "trimmed:wrong_language"
    assert [t["role"] for t in trimmed["metadata"]["turns"]] == ["traveller", "agent"] * 2
    assert trimmed["messages"][-1]["role"] == "assistant" and "Please" not in json.dumps(trimmed["messages"])
    untrimmed = tmp_path / "strict.jsonl"
    strict = run_synth(scenario, SynthConfig(n=4, turns=10, batch_size=4, trim=False), untrimmed,
                       teacher=FakeTeacher(english_ids={1}, late_english_ids={2}), progress=False)
    assert strict["drop_reasons"] == {"wrong_language": 2} and strict["trimmed"] == {}


def test_off_topic_turns_are_trimmed_and_a_finished_file_can_be_refiltered(tmp_path):
    from lorebook.errors import InputError
    from lorebook.synth.runner import refilter

    scenario = load_scenario(EXAMPLE)
    out = tmp_path / "convs.jsonl"
    run_synth(scenario, SynthConfig(n=4, turns=10, batch_size=4, check_topics=False), out,
              teacher=FakeTeacher(), progress=False)
    assert len(lines(out)) == 4
    # the officer's third line loses its topic words: refiltering trims there (two good officer turns remain)
    record = lines(out)[1]
    record["metadata"]["turns"][5]["text"] = "Me gustaría ver al perro que tiene hambre, número uno."
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [lines(out)[0], record]
                           + lines(out)[2:]), encoding="utf-8")
    cleaner = tmp_path / "cleaner.jsonl"
    report = refilter(scenario, SynthConfig(), out, cleaner)
    assert report["kept"] == 4 and report["trimmed"] == {"off_topic": 1} and report["source"] == str(out)
    trimmed = next(r for r in lines(cleaner) if r["id"] == 1)
    assert len(trimmed["metadata"]["turns"]) == 4 and "perro" not in json.dumps(trimmed["messages"], ensure_ascii=False)
    assert trimmed["messages"][0]["role"] == "system" and trimmed["messages"][-1]["role"] == "assistant"
    with pytest.raises(InputError, match="already exists"):
        refilter(scenario, SynthConfig(), out, cleaner)
    with pytest.raises(InputError, match="same file"):
        refilter(scenario, SynthConfig(), out, out)
    from typer.testing import CliRunner

    from lorebook.cli.main import app

    printed = CliRunner().invoke(app, ["synth", str(EXAMPLE), "--refilter", str(out), "-o", str(tmp_path / "c.jsonl")])
    assert printed.exit_code == 0 and "kept 4 conversations" in printed.stdout and "off_topic 1" in printed.stdout
    refused = CliRunner().invoke(app, ["synth", str(EXAMPLE), "--refilter", str(out), "-o", str(out)])
    assert refused.exit_code != 0 and "same file" in refused.output
    (tmp_path / "notes.jsonl").write_text('{"messages": []}\n')
    with pytest.raises(InputError, match="no conversations written by lorebook synth"):
        refilter(scenario, SynthConfig(), tmp_path / "notes.jsonl", tmp_path / "x.jsonl")


def test_a_rejected_turn_is_generated_again(tmp_path):
    class EnglishFirst(FakeTeacher):
        """Conversation 1's officer answers in English on a first try, in Spanish when asked again."""

        def generate(self, message_lists, options, key="", ids=None):
            replies = super().generate(message_lists, options, key, ids)
            return [("Please show me your passport now, sir, and tell me why you came." if i == 1 and "retry" not in key
                     and "aduanas" in m[0]["content"] else r) for i, m, r in zip(ids, message_lists, replies)]

    scenario = load_scenario(EXAMPLE)
    patient = run_synth(scenario, SynthConfig(n=3, turns=8, batch_size=3, retries=2), tmp_path / "a.jsonl",
                        teacher=EnglishFirst(), progress=False)
    assert patient["kept"] == 3 and patient["dropped"] == 0 and not patient["trimmed"]
    strict = run_synth(scenario, SynthConfig(n=3, turns=8, batch_size=3, retries=0), tmp_path / "b.jsonl",
                       teacher=EnglishFirst(), progress=False)
    assert strict["drop_reasons"] == {"wrong_language": 1}


def test_each_side_can_have_its_own_teacher(tmp_path):
    from lorebook.synth.teachers import SideTeachers

    class Recording(FakeTeacher):
        def __init__(self, name):
            super().__init__()
            self.name, self.views = name, []

        def generate(self, message_lists, options, key="", ids=None):
            self.views += [m[0]["content"] for m in message_lists]
            return super().generate(message_lists, options, key, ids)

    officer, traveller = Recording("strong"), Recording("cheap")
    out = tmp_path / "convs.jsonl"
    report = run_synth(load_scenario(EXAMPLE), SynthConfig(n=2, turns=6, batch_size=2), out,
                       teacher=SideTeachers(officer, traveller), progress=False)
    assert report["kept"] == 2 and report["teacher"] == "agent=strong; traveller=cheap"
    assert officer.views and all("aduanas" in v for v in officer.views)
    assert traveller.views and not any("aduanas" in v for v in traveller.views)
    assert lines(out)[0]["metadata"]["teacher"] == "agent=strong; traveller=cheap"


def test_near_duplicates_are_dropped(tmp_path):
    scenario = load_scenario(EXAMPLE)
    out = tmp_path / "convs.jsonl"
    report = run_synth(scenario, SynthConfig(n=6, turns=8, batch_size=6, dedup=0.5), out,
                       teacher=FakeTeacher(same_for_all=True), progress=False)
    assert report["drop_reasons"].get("near_duplicate", 0) >= 1
    assert report["kept"] + report["dropped"] == 6


def test_resume_after_kill_writes_nothing_twice(tmp_path):
    scenario = load_scenario(EXAMPLE)
    config = SynthConfig(n=9, turns=6, batch_size=3)
    whole = tmp_path / "whole.jsonl"
    run_synth(scenario, config, whole, teacher=FakeTeacher(english_ids={4}), progress=False)
    out = tmp_path / "killed.jsonl"
    with pytest.raises(KeyboardInterrupt):  # dies inside the second batch, after the first was written
        run_synth(scenario, config, out, teacher=FakeTeacher(english_ids={4}, die_after_calls=7), progress=False)
    assert [r["id"] for r in lines(out)] == [0, 1, 2]
    with out.open("a") as handle:
        handle.write('{"id": 3, "messa')  # a torn line from a kill mid-write
    report = run_synth(scenario, config, out, teacher=FakeTeacher(english_ids={4}), progress=False)
    assert report["generated_this_run"] == 6
    assert lines(out) == lines(whole)
    assert lines(sidecar(out, "drops.jsonl")) == lines(sidecar(whole, "drops.jsonl"))
    again = run_synth(scenario, config, out, teacher=FakeTeacher(), progress=False)
    assert again["generated_this_run"] == 0 and len(lines(out)) == 8


def test_resume_refuses_other_options(tmp_path):
    from lorebook.errors import InputError

    scenario = load_scenario(EXAMPLE)
    out = tmp_path / "convs.jsonl"
    run_synth(scenario, SynthConfig(n=2, turns=2, batch_size=2), out, teacher=FakeTeacher(), progress=False)
    with pytest.raises(InputError, match="another scenario, teacher, seed"):
        run_synth(scenario, SynthConfig(n=2, turns=2, seed=5), out, teacher=FakeTeacher(), progress=False)
    # How fast the teacher runs is not what was generated: threads, precision, engine may change on resume.
    more = SynthConfig(n=3, turns=2, batch_size=1, threads=1, precision="fp32", engine="llamacpp")
    assert run_synth(scenario, more, out, teacher=FakeTeacher(), progress=False)["generated_this_run"] == 1
    with pytest.raises(InputError, match="--precision 'fp16' is unknown"):
        run_synth(scenario, SynthConfig(n=3, turns=2, precision="fp16"), out, teacher=FakeTeacher(), progress=False)
    with pytest.raises(InputError, match="--engine 'vllm' is unknown"):
        run_synth(scenario, SynthConfig(n=3, turns=2, engine="vllm"), out, teacher=FakeTeacher(), progress=False)


def test_batch_api_files_round_trip(tmp_path):
    """Each run writes one round's requests and stops; fake 'Batch API' results let the next run go on."""
    scenario = load_scenario(EXAMPLE)
    folder, out = tmp_path / "batches", tmp_path / "convs.jsonl"
    config = SynthConfig(n=3, turns=4, batch_size=3, teacher=f"batch:{folder}")
    answerer = FakeTeacher()
    rounds = 0
    while True:
        teacher = BatchFileTeacher(folder, "gpt-4o-mini")
        try:
            report = run_synth(scenario, config, out, teacher=teacher, progress=False)
            break
        except BatchPending as pending:
            rounds += 1
            request_file = Path(str(pending.problem).split(" to ")[1])
            requests = lines(request_file)
            assert {r["url"] for r in requests} == {"/v1/chat/completions"}
            assert all(r["body"]["model"] == "gpt-4o-mini" and r["body"]["max_tokens"] > 0 for r in requests)
            ids = [int(r["custom_id"].rsplit("conv", 1)[1]) for r in requests]
            replies = answerer.generate([r["body"]["messages"] for r in requests], None, ids=ids)
            results = [{"id": f"batch_req_{n}", "custom_id": r["custom_id"], "error": None,
                        "response": {"status_code": 200, "body": {"choices": [{"message": {"content": text}}]}}}
                       for n, (r, text) in enumerate(zip(requests, replies))]
            result_file = request_file.with_name(request_file.name.replace("requests-", "results-"))
            result_file.write_text("".join(json.dumps(x) + "\n" for x in reversed(results)))
            assert set(read_results(result_file).values()) == set(replies)
    assert rounds == 3  # the traveller's opener is scripted; turns 2-4 each needed one batch
    assert report["kept"] == 3 and len(lines(out)) == 3


def test_batch_results_with_errors_are_refused(tmp_path):
    from lorebook.errors import InputError

    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps({"custom_id": "x", "response": {"status_code": 500, "body": {}}, "error": None}) + "\n")
    with pytest.raises(InputError, match="failed"):
        read_results(path)
    path.write_text("not json\n")
    with pytest.raises(InputError, match="not a Batch API result line"):
        read_results(path)


def test_local_teacher_batched_on_a_tiny_model(tiny_model_dir, tmp_path):
    from lorebook.models.engine import load_engine

    scenario = load_scenario(EXAMPLE)
    engine = load_engine(str(tiny_model_dir), threads=1)
    out = tmp_path / "convs.jsonl"
    report = run_synth(scenario, SynthConfig(n=3, turns=3, batch_size=3, check_language=False), out,
                       teacher=LocalTeacher(engine), progress=False)
    assert report["kept"] + report["dropped"] == 3
    assert report["conversations_per_minute"] > 0


def test_turn_rules_catch_role_breaks_and_near_repeats():
    from lorebook.synth.filters import turn_problem

    topics = load_scenario(EXAMPLE).agent.topics
    asked = [{"role": "agent", "text": "¿En qué ciudad se encuentra su pasaporte, señor?"},
             {"role": "traveller", "text": "No lo sé."}]
    assert turn_problem(asked, "agent", "Por favor, ¿en qué ciudad se encuentra su pasaporte?", "es",
                        topics=topics) == "looping_turn"
    assert turn_problem(asked, "agent", "¿Cuál es el motivo de su viaje a España?", "es", topics=topics) is None
    assert turn_problem([], "agent", "Lo siento, pero como una inteligencia artificial no puedo revisar su pasaporte.",
                        "es", topics=topics) == "out_of_character"
    assert turn_problem([], "agent", "Dato: no tengo acceso a datos de su pasaporte en tiempo real.", "es",
                        topics=topics) == "out_of_character"
    heard = tuple(line for line, _ in load_scenario(EXAMPLE).agent.examples)
    assert turn_problem(asked, "agent", "Lleva un poco de queso y jamón.", "es", topics=topics,
                        heard=heard) == "parroting"  # the traveller's few-shot line, in the officer's mouth
    assert turn_problem(asked, "agent", "No lo sé, señor.", "es") is None  # too short to call parroting
    out_of_role = load_scenario(EXAMPLE).agent.out_of_role
    for traveller_talk in ("Llevo algunos alimentos. ¿Tiene algo que declarar?", "Buenos días. ¿En qué puedo ayudarle?"):
        assert turn_problem([], "agent", traveller_talk, "es", topics=topics, out_of_role=out_of_role) == "out_of_character"
    assert turn_problem([], "agent", "¿Lleva algo que declarar?", "es", topics=topics, out_of_role=out_of_role) is None
    said = [{"role": "traveller", "text": "Vengo por turismo, unos tres días."}]
    assert turn_problem(said, "traveller", "Vengo por turismo, unos cuatro días.", "es") is None  # only the agent
    admitted = [{"role": "agent", "text": "Muy bien, puede pasar. Bienvenido a España."},
                {"role": "traveller", "text": "¿Dónde está la salida?"}]
    once = ("bienvenido a espana", "puede pasar")
    assert turn_problem(admitted, "agent", "Bienvenido a España.", "es", once=once) == "looping_turn"
    assert turn_problem(admitted, "agent", "La salida está al fondo, a la derecha.", "es", once=once) is None
    officer = [{"role": "agent", "text": "¿Cuánto tiempo se va a quedar en España?"}]
    assert turn_problem(officer, "traveller", "¿Cuánto tiempo se va a quedar?", "es") == "parroting"
    assert turn_problem(officer, "traveller", "Dos semanas, en casa de mi hermana.", "es") is None


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
    pools = [answer_lines for _, answer_lines in scenario.traveller.answers]
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
    written |= {line for _, pool in scenario.agent.answers for line in pool}
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
