"""Scenario validation and seeded attribute sampling."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lorebook.errors import InputError
from lorebook.synth.dialogue import Conversation, clean_turn, closing, next_step, speaker, view
from lorebook.synth.scenario import load_scenario, sample_attributes, sample_sampling

EXAMPLE = Path(__file__).parent.parent / "examples" / "customs-checkpoint-es.yaml"


def minimal() -> dict:
    return {
        "language": "es",
        "opening": "traveller",
        "agent": {"system": "Eres agente de aduanas.", "closings": {"admitted": ["bienvenido"]}},
        "traveller": {"system": "Eres un viajero de {country}.", "openers": ["Hola."]},
        "attributes": {"country": ["Francia", "Japón", "México"], "mood": ["tranquilo", "nervioso"]},
        "sampling": {"temperature": [0.5, 0.9]},
    }


def write(tmp_path, data) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_shipped_example_loads_with_scripts():
    scenario = load_scenario(EXAMPLE)
    assert scenario.language == "es" and scenario.opening == "traveller"
    assert len(scenario.script) >= 5 and all(len(s) == 10 for s in scenario.script)
    assert "admitted" in scenario.agent.closings and scenario.agent.examples


def test_example_followups_are_not_eval_script_lines():
    """synth --followups trains on these lines; the evaluation must still meet lines it was not taught on."""
    from lorebook.synth.topics import normalize_words

    scenario = load_scenario(EXAMPLE)
    followups = {" ".join(normalize_words(line)) for line in scenario.traveller.followups}
    scripted = {" ".join(normalize_words(line)) for script in scenario.script for line in script}
    assert len(followups) >= 10 and not followups & scripted


def test_example_answers_are_not_eval_script_lines():
    """synth --scripted-answers trains on these lines, filled with every attribute value they can take."""
    from lorebook.synth.scenario import fill
    from lorebook.synth.topics import normalize_words

    scenario = load_scenario(EXAMPLE)
    scripted = {" ".join(normalize_words(line)) for script in scenario.script for line in script}
    filled = {fill(line, {name: value for name in scenario.attributes})
              for values in scenario.attributes.values() for value in values
              for answer in scenario.traveller.answers for line in answer.lines}
    assert len(filled) > 40 and not {" ".join(normalize_words(line)) for line in filled} & scripted


def test_scripted_answer_follows_the_questions_in_order():
    from lorebook.synth.dialogue import answer_parts, asked_answers

    scenario = load_scenario(EXAMPLE)
    conversation = Conversation(3, sample_attributes(scenario, 0, 3), {})

    def scripted_answer(side, asked, conversation, seed, turn):
        return " ".join(answer_parts(asked_answers(side, asked), conversation, seed, turn)) or None

    both = scripted_answer(scenario.traveller, "¿Dónde se aloja y cuántos días se queda?", conversation, 0, 4)
    pools = {answer.asks[0]: answer.lines for answer in scenario.traveller.answers}
    lodging, days = pools["aloj"], pools["tiempo"]
    assert any(both.startswith(line) for line in lodging) and any(both.endswith(line) for line in days)
    assert scripted_answer(scenario.traveller, "¿Dónde se aloja y cuántos días se queda?", conversation, 0, 4) == both
    assert scripted_answer(scenario.traveller, "Muy bien, gracias.", conversation, 0, 4) is None


def scripted_officer(tmp_path):
    data = minimal()
    data["agent"].update(
        agenda=[{"step": "Pide el pasaporte.", "done": ["pasaport"], "lines": ["Su pasaporte, por favor."]},
                {"step": "Pregunta qué lleva.", "done": ["declar"], "lines": ["¿Lleva algo que declarar?"]},
                {"step": "Decide.", "done": ["bienvenid"]}],
        answers=[{"asks": ["hola"], "lines": ["Hola. {step}"]},
                 {"asks": ["jamon"], "lines": ["El jamón no puede entrar.", "Tiene que dejar el jamón aquí."]}])
    return load_scenario(write(tmp_path, data))


def test_scripted_turn_reacts_then_asks_the_next_step(tmp_path):
    from lorebook.synth.dialogue import scripted_turn

    scenario = scripted_officer(tmp_path)
    conversation = Conversation(0, {}, {}, turns=[{"role": "traveller", "text": "Hola, ¿qué tal?"}])
    assert scripted_turn(scenario.agent, conversation, 0, 1) == "Hola. Su pasaporte, por favor."
    conversation.turns = [{"role": "traveller", "text": "Hola, aquí tiene mi pasaporte."}]
    assert scripted_turn(scenario.agent, conversation, 0, 1) == "Hola. ¿Lleva algo que declarar?"  # covered
    conversation.turns += [{"role": "agent", "text": "¿Lleva algo que declarar?"},
                           {"role": "traveller", "text": "Llevo un jamón."}]
    first = scripted_turn(scenario.agent, conversation, 0, 3)
    assert first in ("El jamón no puede entrar.", "Tiene que dejar el jamón aquí.")  # stands alone, no step
    conversation.turns += [{"role": "agent", "text": first}, {"role": "traveller", "text": "¿Otra vez? Un jamón."}]
    second = scripted_turn(scenario.agent, conversation, 0, 5)
    assert second != first and second in ("El jamón no puede entrar.", "Tiene que dejar el jamón aquí.")
    conversation.turns += [{"role": "agent", "text": second}, {"role": "traveller", "text": "Vale."}]
    assert scripted_turn(scenario.agent, conversation, 0, 7) is None  # the decision step has no lines: teacher


def test_a_late_answer_is_said_when_next_asked_and_the_officer_asks_again(tmp_path):
    """--late-answers: "Dos semanas." to the stay-and-address question, the address in answer to the declaration
    question, and the officer asks the declaration again (its `again` line) instead of taking it for an answer."""
    from lorebook.synth.dialogue import scripted_turn, traveller_answer

    data = minimal()
    data["agent"].update(agenda=[
        {"step": "Pregunta estancia y dirección.", "done": ["qued", "aloj"], "lines": ["¿Cuánto se queda y dónde se aloja?"]},
        {"step": "Pregunta qué lleva.", "done": ["declar"], "lines": ["¿Lleva algo que declarar?"],
         "again": ["Anotado. ¿Y lleva algo que declarar?"]},
        {"step": "Decide.", "done": ["bienvenid"], "lines": ["Bienvenido a España."]}])
    data["traveller"]["answers"] = [{"asks": ["qued"], "lines": ["Dos semanas."]},
                                    {"asks": ["aloj"], "lines": ["En un hotel del centro."]},
                                    {"asks": ["declar"], "lines": ["Nada que declarar."]}]
    scenario = load_scenario(write(tmp_path, data))
    conversation = Conversation(0, {}, {}, turns=[{"role": "traveller", "text": "Hola."},
                                                  {"role": "agent", "text": "¿Cuánto se queda y dónde se aloja?"}])
    assert traveller_answer(scenario.traveller, conversation, 0, 2) == "Dos semanas. En un hotel del centro."
    assert traveller_answer(scenario.traveller, conversation, 0, 2, late_answers=1.0) == "Dos semanas."
    conversation.turns += [{"role": "traveller", "text": "Dos semanas."}]
    conversation.turns += [{"role": "agent", "text": scripted_turn(scenario.agent, conversation, 0, 3)}]
    assert conversation.turns[-1]["text"] == "¿Lleva algo que declarar?"
    late = traveller_answer(scenario.traveller, conversation, 0, 4, late_answers=1.0)
    assert late == "En un hotel del centro." and conversation.held is None and conversation.late_at == 4
    conversation.turns += [{"role": "traveller", "text": late}]
    conversation.turns += [{"role": "agent", "text": scripted_turn(scenario.agent, conversation, 0, 5)}]
    assert conversation.turns[-1]["text"] == "Anotado. ¿Y lleva algo que declarar?"
    conversation.turns += [{"role": "traveller", "text": traveller_answer(scenario.traveller, conversation, 0, 6, 1.0)}]
    assert conversation.turns[-1]["text"] == "Nada que declarar."
    assert scripted_turn(scenario.agent, conversation, 0, 7) == "Bienvenido a España."


def test_a_reaction_that_stands_alone_keeps_the_other_from_adding_a_step(tmp_path):
    """Thanks and a goodbye in one line: the officer thanks and says goodbye, without asking the next step."""
    from lorebook.synth.dialogue import scripted_turn

    data = minimal()
    data["agent"].update(
        agenda=[{"step": "Pide el pasaporte.", "done": ["pasaport"], "lines": ["Su pasaporte, por favor."]}],
        answers=[{"asks": ["gracias"], "lines": ["De nada. {step}"]},
                 {"asks": ["adios"], "lines": ["Adiós, buen viaje."]}])
    scenario = load_scenario(write(tmp_path, data))
    conversation = Conversation(0, {}, {}, turns=[{"role": "traveller", "text": "Gracias por todo, adiós."}])
    assert scripted_turn(scenario.agent, conversation, 0, 1) == "De nada. Adiós, buen viaje."
    conversation.turns = [{"role": "traveller", "text": "Muchas gracias."}]
    assert scripted_turn(scenario.agent, conversation, 0, 1) == "De nada. Su pasaporte, por favor."


def test_a_reaction_is_not_said_when_a_word_rules_it_out(tmp_path):
    """"Tres mil euros" is under the limit: the officer says so instead of handing over the cash form."""
    from lorebook.synth.dialogue import scripted_turn

    data = minimal()
    data["agent"].update(answers=[
        {"asks": ["euros"], "unless": ["mil"], "lines": ["Rellene este formulario."]},
        {"asks": ["mil"], "lines": ["Por debajo de 10.000 euros no se declara."]}])
    scenario = load_scenario(write(tmp_path, data))
    conversation = Conversation(0, {}, {}, turns=[{"role": "traveller", "text": "Llevo 15.000 euros."}])
    assert scripted_turn(scenario.agent, conversation, 0, 1) == "Rellene este formulario."
    conversation.turns = [{"role": "traveller", "text": "Llevo tres mil euros."}]
    assert scripted_turn(scenario.agent, conversation, 0, 1) == "Por debajo de 10.000 euros no se declara."


def test_a_question_about_the_goods_gets_the_last_rule_again(tmp_path):
    """{rule}: "¿Me va a costar algo?" after the meat rule gets that rule in its other wording; before any rule
    the entry is not used (the step is asked instead), and a reaction with {step} is not a rule to repeat."""
    from lorebook.synth.dialogue import scripted_turn

    data = minimal()
    data["agent"].update(
        agenda=[{"step": "Pregunta qué lleva.", "done": ["declar"], "lines": ["¿Lleva algo que declarar?"]}],
        answers=[{"asks": ["jamon"], "lines": ["La carne no puede entrar.", "Tiene que dejar la carne aquí."]},
                 {"asks": ["queso"], "lines": ["El queso puede entrar. {step}"]},
                 {"asks": ["costar"], "lines": ["Se lo repito: {rule}"]}])
    scenario = load_scenario(write(tmp_path, data))
    conversation = Conversation(0, {}, {}, turns=[{"role": "traveller", "text": "¿Me va a costar algo?"}])
    assert scripted_turn(scenario.agent, conversation, 0, 1) == "¿Lleva algo que declarar?"
    conversation.turns = [{"role": "traveller", "text": "Llevo queso."}]
    assert scripted_turn(scenario.agent, conversation, 0, 1) == "El queso puede entrar. ¿Lleva algo que declarar?"
    assert conversation.rule is None
    conversation.turns = [{"role": "traveller", "text": "Llevo un jamón."}]
    rule = scripted_turn(scenario.agent, conversation, 0, 1)
    conversation.turns += [{"role": "agent", "text": rule}, {"role": "traveller", "text": "¿Me va a costar algo?"}]
    other = ({"La carne no puede entrar.", "Tiene que dejar la carne aquí."} - {rule}).pop()
    assert scripted_turn(scenario.agent, conversation, 0, 3) == f"Se lo repito: {other}"
    assert conversation.rule == ["La carne no puede entrar.", "Tiene que dejar la carne aquí."]
    data["traveller"]["answers"] = [{"asks": ["aloj"], "lines": ["En casa, {rule}."]}]
    with pytest.raises(InputError, match="traveller.answers"):  # only the agent has rules to say again
        load_scenario(write(tmp_path, data))


def test_goods_held_pending_get_the_pending_lines_until_the_end(tmp_path):
    """`holds`: once the officer has stated the meat rule, the decision step says its `pending` line (no plain
    admission), "¿Necesito algo más?" gets the rule again instead of the way out, a direction said meanwhile
    does not replace the rule that `{rule}` repeats, and the traveller's answer to the rule is awaited."""
    from lorebook.synth.dialogue import awaits_answer, scripted_turn

    data = minimal()
    meat = ["La carne no puede entrar.", "Tiene que dejar la carne aquí."]
    data["agent"].update(
        agenda=[{"step": "Pregunta qué lleva.", "done": ["declar"], "lines": ["¿Lleva algo que declarar?"]},
                {"step": "Decide.", "done": ["bienvenid", "resuel"], "lines": ["Bienvenido a España."],
                 "pending": ["Resuelto eso, puede pasar."]},
                {"step": "Contesta.", "lines": ["Siga hacia la salida."], "pending": ["Recuerde: {rule}"]}],
        answers=[{"asks": ["jamon"], "holds": True, "lines": meat},
                 {"asks": ["cinta"], "lines": ["La cinta está detrás."]},
                 {"asks": ["necesito"], "lines": ["No, siga hacia la salida."], "pending": ["Antes de irse: {rule}"]}])
    data["traveller"]["answers"] = [{"asks": ["carne"], "lines": ["¿Y si es un regalo?"]}]
    scenario = load_scenario(write(tmp_path, data))
    conversation = Conversation(0, {}, {}, turns=[{"role": "agent", "text": "¿Lleva algo que declarar?"},
                                                  {"role": "traveller", "text": "¿Necesito algo más?"}])
    assert scripted_turn(scenario.agent, conversation, 0, 1) == "No, siga hacia la salida."  # nothing held yet
    conversation.turns[-1]["text"] = "Llevo un jamón."
    rule = scripted_turn(scenario.agent, conversation, 0, 1)
    assert rule in meat and conversation.holding and conversation.ruled_at == 2
    conversation.turns.append({"role": "agent", "text": rule})
    assert awaits_answer(scenario.traveller, conversation)  # a statement, but a held rule the traveller answers
    conversation.turns.append({"role": "traveller", "text": "Vale."})
    assert scripted_turn(scenario.agent, conversation, 0, 3) == "Resuelto eso, puede pasar."
    conversation.turns += [{"role": "agent", "text": "Resuelto eso, puede pasar."},
                           {"role": "traveller", "text": "¿Y la cinta?"}]
    assert scripted_turn(scenario.agent, conversation, 0, 5) == "La cinta está detrás."
    assert conversation.rule == meat  # a direction does not replace the held rule
    conversation.turns += [{"role": "agent", "text": "La cinta está detrás."},
                           {"role": "traveller", "text": "¿Necesito algo más?"}]
    assert not awaits_answer(scenario.traveller, conversation)
    assert scripted_turn(scenario.agent, conversation, 0, 7) == f"Antes de irse: {({*meat} - {rule}).pop()}"
    conversation.turns += [{"role": "agent", "text": "Antes de irse: …"}, {"role": "traveller", "text": "Vale."}]
    assert scripted_turn(scenario.agent, conversation, 0, 9).startswith("Recuerde: ")
    data["agent"]["answers"][0]["holds"] = "yes"
    with pytest.raises(InputError, match=r"agent.answers\[1\]"):
        load_scenario(write(tmp_path, data))
    data["agent"]["answers"][0]["holds"] = True
    data["agent"]["agenda"][1]["pending"] = ["Hasta {planet}."]
    with pytest.raises(InputError, match=r"agenda\[2\].pending: uses undefined attribute"):
        load_scenario(write(tmp_path, data))


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("language"), "language"),
    (lambda d: d.update(opening="nobody"), "opening"),
    (lambda d: d["agent"].update(system=""), "agent.system"),
    (lambda d: d["traveller"].update(system="de {planet}"), "undefined attribute"),
    (lambda d: d["agent"].update(colour="red"), "unknown keys colour"),
    (lambda d: d.update(sampling={"temperature": [0.9, 0.1]}), "sampling.temperature"),
    (lambda d: d.update(attributes={"mood": []}), "attributes"),
    (lambda d: d["agent"].update(examples=[["only one"]]), "agent.examples[1]"),
    (lambda d: d["traveller"].update(openers=[]), "traveller.openers"),
    (lambda d: d["agent"].update(topics="pasaporte"), "agent.topics"),
    (lambda d: d["agent"].update(topics=["pasaporte", "¿?"]), "agent.topics"),
    (lambda d: d["agent"].update(agenda=["Pide el pasaporte."]), "agent.agenda[1]"),
    (lambda d: d["agent"].update(out_of_role="llevo"), "agent.out_of_role"),
    (lambda d: d["agent"].update(agenda=[{"step": "x", "done": "pasaporte"}]), "agent.agenda[1].done"),
    (lambda d: d["agent"].update(agenda=[{"step": "Pregunta por {planet}."}]), "agent.agenda[1].step"),
    (lambda d: d["traveller"].update(followups="¿Dónde está la salida?"), "traveller.followups"),
    (lambda d: d["traveller"].update(followups=["Vale.", "Vengo de {planet}."]), "traveller.followups[2]"),
    (lambda d: d["traveller"].update(answers={"asks": ["pasaport"]}), "traveller.answers"),
    (lambda d: d["traveller"].update(answers=[{"asks": ["pasaport"]}]), "traveller.answers[1]"),
    (lambda d: d["traveller"].update(answers=[{"asks": ["dónde se aloja"], "lines": ["En Madrid."]}]),
     "traveller.answers[1].asks"),
    (lambda d: d["traveller"].update(answers=[{"asks": ["aloj"], "lines": []}]), "traveller.answers[1].lines"),
    (lambda d: d["traveller"].update(answers=[{"asks": ["aloj"], "unless": "hotel", "lines": ["En casa."]}]),
     "traveller.answers[1].unless"),
    (lambda d: d["traveller"].update(answers=[{"asks": ["aloj"], "lines": ["En {planet}."]}]),
     "traveller.answers[1].lines"),
    (lambda d: d["traveller"].update(answers=[{"asks": ["aloj"], "lines": ["En Madrid. {step}"]}]),
     "traveller.answers[1].lines"),  # only the agent has agenda steps to place
    (lambda d: d["agent"].update(agenda=[{"step": "x", "lines": "Su pasaporte."}]), "agent.agenda[1].lines"),
    (lambda d: d["agent"].update(agenda=[{"step": "x", "lines": ["De {planet}?"]}]), "agent.agenda[1].lines"),
    (lambda d: d["agent"].update(agenda=[{"step": "x", "again": "¿Y qué lleva?"}]), "agent.agenda[1].again"),
])
def test_validation_errors_name_the_key_and_fix(tmp_path, change, message):
    data = minimal()
    change(data)
    with pytest.raises(InputError) as caught:
        load_scenario(write(tmp_path, data))
    assert message in str(caught.value) and caught.value.fix


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_scenario(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent: [unclosed", encoding="utf-8")
    with pytest.raises(InputError, match="not valid"):
        load_scenario(bad)


def test_sampling_is_seeded_and_varied(tmp_path):
    scenario = load_scenario(write(tmp_path, minimal()))
    first = [sample_attributes(scenario, 7, i) for i in range(40)]
    assert first == [sample_attributes(scenario, 7, i) for i in range(40)]
    assert {a["country"] for a in first} == {"Francia", "Japón", "México"}
    assert {a["mood"] for a in first} == {"tranquilo", "nervioso"}
    assert first != [sample_attributes(scenario, 8, i) for i in range(40)]
    temperatures = {sample_sampling(scenario, 7, b)["temperature"] for b in range(20)}
    assert len(temperatures) > 10 and all(0.5 <= t <= 0.9 for t in temperatures)


def test_each_side_sees_its_own_view(tmp_path):
    scenario = load_scenario(write(tmp_path, minimal()))
    conversation = Conversation(0, {"country": "Japón", "mood": "tranquilo"}, {})
    conversation.turns = [{"role": "traveller", "text": "Hola."}, {"role": "agent", "text": "Pasaporte."}]
    agent, traveller = view(scenario, conversation, "agent"), view(scenario, conversation, "traveller")
    assert [m["role"] for m in agent[1:]] == ["user", "assistant"]
    assert [m["role"] for m in traveller[1:]] == ["assistant", "user"]
    assert "Japón" in traveller[0]["content"]
    assert speaker(scenario, 0) == "traveller" and speaker(scenario, 1) == "agent"


def test_turn_cleaning_and_closings(tmp_path):
    scenario = load_scenario(write(tmp_path, minimal()))
    assert clean_turn("Agente: ¿Su pasaporte? niżsales\nViajero: aquí") == "¿Su pasaporte?"
    assert clean_turn("  \n") == ""
    assert closing(scenario.agent, "Muy bien. Bienvenido a España.") == "admitted"
    assert closing(scenario.agent, "¿Algo que declarar?") is None


def test_the_agenda_hints_the_first_step_no_turn_has_covered(tmp_path):
    data = minimal()
    data["agent"].update(hints="Hoy eres {mood}.", agenda=[
        {"step": "Pide el pasaporte.", "done": ["pasaport", "passport"]},
        {"step": "Pregunta el motivo del viaje.", "done": ["motivo", "vacacion"]},
        {"step": "Despide al viajero de {country}."},
    ])
    scenario = load_scenario(write(tmp_path, data))
    conversation = Conversation(0, {"country": "Japón", "mood": "tranquilo"}, {})
    conversation.turns = [{"role": "traveller", "text": "Hola."}]
    assert next_step(scenario.agent, conversation) == "Pide el pasaporte."
    agent = view(scenario, conversation, "agent")
    assert agent[0]["content"] == "Eres agente de aduanas."  # one prefix for every conversation
    assert agent[-1]["content"] == "Hola.\n\nHoy eres tranquilo. Pide el pasaporte."
    conversation.turns.append({"role": "agent", "text": "¿Su PASAPORTE, por favor?"})
    assert next_step(scenario.agent, conversation) == "Pregunta el motivo del viaje."
    conversation.turns.append({"role": "traveller", "text": "Aquí tiene. Vengo de vacaciones."})
    assert next_step(scenario.agent, conversation) == "Despide al viajero de Japón."
    assert "Despide" not in view(scenario, conversation, "traveller")[-1]["content"]
    scenario.agent.hints = "[Nota: {step}]"
    assert view(scenario, conversation, "agent")[-1]["content"].endswith("[Nota: Despide al viajero de Japón.]")
    assert next_step(scenario.traveller, conversation) == ""
