"""The generator: filters, dedup, resume after a kill, Batch API file round trip, a tiny local model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorebook.synth.runner import SynthConfig, run_synth, sidecar
from lorebook.synth.scenario import load_scenario
from lorebook.synth.teachers import BatchFileTeacher, BatchPending, LocalTeacher, read_results
from synth_fakes import EXAMPLE, FakeTeacher, lines


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
