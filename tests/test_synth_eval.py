"""Persona evaluation metrics on crafted conversations and a fake engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorebook.errors import InputError
from lorebook.synth.persona_eval import (
    PersonaEvalConfig,
    Subject,
    _perplexity_interval,
    in_character,
    in_language,
    reference_chrf,
    run_persona_eval,
    score_conversations,
    scripts,
)
from lorebook.synth.scenario import load_scenario, load_scripts

EXAMPLE = Path(__file__).parent.parent / "examples" / "customs-checkpoint-es.yaml"


def chat(*replies: str) -> list[dict]:
    messages = [{"role": "system", "content": "Eres agente."}]
    for reply in replies:
        messages += [{"role": "user", "content": "Hello."}, {"role": "assistant", "content": reply}]
    return messages


def test_language_and_character_on_crafted_turns():
    assert in_language("Buenos días, su pasaporte por favor.", "es")
    assert not in_language("Good morning, your passport please, sir.", "es")
    assert in_language("Sí.", "es")  # too short to call, but a real answer
    assert not in_language("...", "es")  # nothing said is not Spanish
    assert not in_language("Me gustaría darle un regalo. mantenimiento に通客 No lo haré.", "es")
    assert in_character("¿Lleva algo que declarar?")
    assert not in_character("Como IA, no puedo revisar su equipaje.")
    assert not in_character("As an AI language model I cannot do that.")
    assert not in_character("Viajero: vengo de vacaciones.")
    assert not in_character("sí sí sí sí sí sí sí sí sí sí sí sí sí sí")


def test_scores_per_turn_and_overall():
    chats = [chat("Buenos días, su pasaporte por favor.", "Good morning, show me your passport please."),
             chat("¿Cuál es el motivo de su viaje a España?", "Soy un modelo de lenguaje y no puedo ayudar.")]
    scores = score_conversations(chats, "es")
    assert scores["language"]["k"] == 3 and scores["language"]["n"] == 4
    assert scores["in_character"]["k"] == 3
    assert scores["language_by_turn"] == [1.0, 0.5]
    low, high = scores["language"]["ci"]
    assert low < 0.75 < high


def test_a_turn_that_parrots_or_repeats_itself_is_out_of_character():
    from lorebook.synth.persona_eval import character_turns

    looping = [{"role": "system", "content": "Eres agente."},
               {"role": "user", "content": "Buenas tardes."},
               {"role": "assistant", "content": "Buenas tardes. Su pasaporte, por favor."},  # a greeting returned
               {"role": "user", "content": "Vengo de vacaciones."},
               {"role": "assistant", "content": "Vengo de vacaciones. ¿Por qué debería visitar Madrid?"},  # parrots
               {"role": "user", "content": "Dos semanas."},
               {"role": "assistant", "content": "¿Por qué debería visitar Madrid? ¡Gracias por compartir tu día!"},
               {"role": "user", "content": "En un hotel."},
               {"role": "assistant", "content": "¿Por qué debería visitar Madrid? ¡Gracias por compartir tu día!"}]
    assert character_turns(looping) == [True, False, True, False]
    assert score_conversations([looping], "es")["in_character"]["k"] == 2


def test_on_topic_share_and_the_rule_on_labelled_turns():
    from lorebook.synth.topics import check_topics, on_topic

    topics = load_scenario(EXAMPLE).agent.topics
    assert on_topic("¿Cuántos DIAS se va a quedar?", topics) and on_topic("Su pasaporte.", ("pasaport",))
    assert not on_topic("Me gustaría ver al perro que tiene hambre.", topics)
    assert on_topic("Lo que sea.", ())  # no topics listed: nothing is off topic
    chats = [chat("Su pasaporte, por favor.", "Vamos a aprender juntos."),
             chat("¿Lleva algo que declarar?", "Como IA, no puedo revisar su equipaje.")]
    scores = score_conversations(chats, "es", topics)
    assert scores["on_topic"]["k"] == 2 and scores["on_topic"]["n"] == 4  # the AI admission is not on topic
    assert "on_topic" not in score_conversations(chats, "es")
    check = check_topics(topics, {"in_role": [("x", "Su pasaporte.")], "out_of_role": [("x", "Me encanta el perro."),
                                                                                     ("x", "Me encanta el jamón.")]})
    assert check["n"] == 3 and check["value"] == pytest.approx(2 / 3)


def test_agenda_coverage_counts_what_the_agent_asked():
    agenda = load_scenario(EXAMPLE).agent.agenda
    interview = chat("Buenos días. Su pasaporte, por favor.", "¿Cuál es el motivo de su viaje?",
                     "¿Cuántos días se queda?", "¿Lleva algo que declarar?")
    shop = chat("¡Bienvenido! ¿En qué puedo ayudarle?", "Tenemos productos de Madrid a buen precio.")
    traveller_says_it = [{"role": "user", "content": "Aquí tiene mi pasaporte, vengo de vacaciones."},
                         {"role": "assistant", "content": "Muy bien."}]
    scores = score_conversations([interview, shop, traveller_says_it], "es", agenda=agenda)
    assert scores["agenda_steps"]["pasaport"]["k"] == 1 and scores["agenda_steps"]["declar"]["k"] == 1
    assert scores["agenda"]["value"] == pytest.approx(1 / 3) and scores["agenda"]["n"] == 3
    assert "agenda" not in score_conversations([interview], "es")


def test_scripts_cycle_to_the_requested_size():
    scenario = load_scenario(EXAMPLE)
    lines = scripts(scenario, 8, 12)
    assert len(lines) == 8 and all(len(s) == 12 for s in lines)
    assert lines[0][10] == scenario.script[0][0] and lines[len(scenario.script)] == lines[0]


def test_scripts_from_their_own_file_and_bad_ones_are_refused(tmp_path):
    alone = tmp_path / "fresh.yaml"
    alone.write_text("script:\n  - [Hola., Llevo peras.]\n  - [Buenas., Traigo ginebra., Adiós.]\n")
    assert load_scripts(alone) == [["Hola.", "Llevo peras."], ["Buenas.", "Traigo ginebra.", "Adiós."]]
    assert load_scripts(EXAMPLE) == load_scenario(EXAMPLE).script  # a scenario's eval.script reads too
    for text, named in (("script: [Hola.]\n", "must be a list of scripts"), ("script: []\n", "at least one"),
                        ("script: [[Hola.], []]\n", "none of them empty"), ("lines: [[Hola.]]\n", "no script:"),
                        ("script: [[Hola.]\n", "not valid UTF-8 YAML")):
        alone.write_text(text)
        with pytest.raises(InputError, match=named):
            load_scripts(alone)
    with pytest.raises(InputError, match="does not exist"):
        load_scripts(tmp_path / "missing.yaml")


def test_perplexity_interval_from_token_totals():
    import math

    result = _perplexity_interval([(10.0, 10), (20.0, 10)])
    assert result["value"] == pytest.approx(math.exp(1.5))
    assert result["ci"][0] <= result["value"] <= result["ci"][1]
    assert result["ci"][0] >= math.exp(1.0) - 1e-9 and result["ci"][1] <= math.exp(2.0) + 1e-9


class EchoEngine:
    """Replies with the Spanish reference when it knows it, otherwise the fallback for that turn (a list
    cycles: an officer who says the same line every turn is not in character)."""

    def __init__(self, answers: dict[str, str], fallback):
        self.answers = answers
        self.fallbacks = [fallback] if isinstance(fallback, str) else fallback

    def chat_batch(self, conversations, options=None):
        turn = lambda c: sum(m["role"] == "assistant" for m in c) % len(self.fallbacks)
        return [self.answers.get(c[-1]["content"], self.fallbacks[turn(c)]) for c in conversations]


def test_chrf_is_high_for_the_reference_and_low_otherwise():
    references = [chat("Su pasaporte, por favor.", "¿Cuánto tiempo se queda en España?")]
    subject = Subject("x", None, [], "Eres agente.", None)
    perfect = reference_chrf(EchoEngine({"Hello.": "Su pasaporte, por favor."}, ""), subject, references)
    wrong = reference_chrf(EchoEngine({}, "I like turtles"), subject, references)
    assert perfect["n"] == 2 and perfect["value"] > 50 > wrong["value"]


def test_run_compares_untuned_and_tuned(tmp_path):
    from lorebook import paths

    persona = paths.subdir("personas") / "officer-tuned.yaml"
    persona.write_text("name: officer-tuned\nmodel: smollm2-135m\nadapters: [customs-es]\nlanguage: es\n"
                       "system: Eres agente de aduanas.\n", encoding="utf-8")
    references = tmp_path / "held-out.jsonl"
    references.write_text(json.dumps({"messages": chat("Buenos días, su pasaporte.")}) + "\n")
    engines = {(): EchoEngine({}, "Hello, I am an AI assistant, how can I help you today?"),
               ("customs-es",): EchoEngine({}, ["Buenos días, su pasaporte y el motivo del viaje, por favor.",
                                                "¿Cuánto tiempo se va a quedar en España?",
                                                "¿Lleva algo que declarar en el equipaje?"])}
    result = run_persona_eval(
        PersonaEvalConfig(persona="officer-tuned", scenario=str(EXAMPLE), turns=3, conversations=2,
                          references=str(references)),
        progress=False, engine_loader=lambda subject: engines[tuple(subject.adapters)])
    base, tuned = result["rows"]
    assert base["label"] == "smollm2-135m untuned" and tuned["adapters"] == ["customs-es"]
    assert base["metrics"]["language"]["value"] == 0 and tuned["metrics"]["language"]["value"] == 1
    assert base["metrics"]["in_character"]["value"] == 0 and tuned["metrics"]["in_character"]["value"] == 1
    assert tuned["metrics"]["chrf"]["value"] > base["metrics"]["chrf"]["value"]
    assert len(tuned["conversations"]) == 2 and len(tuned["conversations"][0]) == 1 + 2 * 3
    fresh = tmp_path / "fresh.yaml"
    fresh.write_text("script:\n  - [Traigo unas peras., Y un melón., Adiós.]\n")
    result = run_persona_eval(
        PersonaEvalConfig(persona="officer-tuned", scenario=str(EXAMPLE), scripts=str(fresh), turns=3,
                          baseline=False),
        progress=False, engine_loader=lambda subject: engines[tuple(subject.adapters)])
    (chat_,) = result["rows"][0]["conversations"]
    assert [m["content"] for m in chat_ if m["role"] == "user"] == ["Traigo unas peras.", "Y un melón.", "Adiós."]
    assert result["scripts"] == str(fresh)


def test_option_overrides_the_personas_sampling_and_bad_ones_are_refused():
    from lorebook import paths
    from lorebook.errors import InputError
    from lorebook.synth.persona_eval import subjects

    persona = paths.subdir("personas") / "officer-dry.yaml"
    persona.write_text("name: officer-dry\nmodel: smollm2-135m\nadapters: [customs-es]\nsystem: Eres agente.\n"
                       "options: {repetition_penalty: 1.15, no_repeat_ngram: 4}\n", encoding="utf-8")
    base, tuned = subjects(PersonaEvalConfig(persona="officer-dry", options=["dry_multiplier=0.8"]))
    for subject in (base, tuned):
        assert subject.options.dry_multiplier == 0.8 and subject.options.no_repeat_ngram == 4
        assert subject.options.repetition_penalty == 1.15 and subject.options.temperature == 0.0
    _, warm = subjects(PersonaEvalConfig(persona="officer-dry", options=["temperature=0.7", "seed=3"]))
    assert warm.options.temperature == 0.7 and warm.options.seed == 3  # asked for: not reset to greedy
    with pytest.raises(InputError, match="bad option"):
        subjects(PersonaEvalConfig(persona="officer-dry", options=["dryness=1"]))


class RoleJudgeEngine:
    """A judge that says yes when the reply it is shown asks for the passport, no otherwise."""

    def __init__(self):
        self.prompts = []

    def chat_batch(self, conversations, options=None):
        self.prompts += [c[-1]["content"] for c in conversations]
        return ["yes" if "pasaporte" in c[-1]["content"].partition("replied:")[2] else "No." for c in conversations]


def test_a_role_judge_scores_every_agent_turn_and_reports_agreement():
    from lorebook import paths
    from lorebook.evaluate.judge import Judge

    persona = paths.subdir("personas") / "officer-judged.yaml"
    persona.write_text("name: officer-judged\nmodel: smollm2-135m\nadapters: [customs-es]\nlanguage: es\n"
                       "system: Eres agente de aduanas.\n", encoding="utf-8")
    engines = {(): EchoEngine({}, ["Me gustaría ver al perro que tiene hambre.",  # in character by the rules
                                   "Vamos a aprender juntos a cocinar hoy.", "Mi hijo tiene tres hijos pequeños."]),
               ("customs-es",): EchoEngine({}, ["Buenos días, su pasaporte, por favor.", "Su pasaporte y el billete.",
                                                "Necesito ver su pasaporte otra vez."])}
    judge_engine = RoleJudgeEngine()
    result = run_persona_eval(
        PersonaEvalConfig(persona="officer-judged", scenario=str(EXAMPLE), turns=3, conversations=2),
        progress=False, engine_loader=lambda subject: engines[tuple(subject.adapters)],
        judge=Judge("fake-judge", engine=judge_engine))
    base, tuned = (row["metrics"] for row in result["rows"])
    assert base["in_character"]["value"] == 1 and base["acts_the_role"]["value"] == 0  # what rules cannot see
    assert tuned["acts_the_role"] == {**tuned["acts_the_role"], "value": 1.0, "n": 6, "judge": "fake-judge"}
    assert base["judge_agreement"]["value"] == 0 and tuned["judge_agreement"]["value"] == 1
    scenario = load_scenario(EXAMPLE)
    labelled = len(scenario.judge_check["in_role"]) + len(scenario.judge_check["out_of_role"])
    assert len(judge_engine.prompts) == 12 + labelled  # every agent turn, then the labelled check
    first = judge_engine.prompts[0]
    assert "Eres Marta García" in first and f'said: "{scenario.script[0][0]}"' in first
    check = result["judge_check"]  # the fake judge only knows replies that ask for the passport (2 of 10)
    assert check["n"] == labelled and check["value"] == 0.6 and 0 < check["kappa"] < 0.3


def test_judge_check_in_a_scenario_is_validated(tmp_path):
    from lorebook.errors import InputError

    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text(encoding="utf-8").replace("    in_role:\n", "    in_rol:\n", 1), encoding="utf-8")
    with pytest.raises(InputError, match="eval.judge_check: must be a mapping with in_role and out_of_role"):
        load_scenario(bad)
