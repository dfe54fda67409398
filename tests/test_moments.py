"""A persona's moments: best of several replies, picked by what example conversations said after a similar line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lorebook.chat.moments import MomentPicker, MomentsConfig, candidate_replies, read_moments
from lorebook.chat.persona import parse_persona
from lorebook.errors import InputError, PersonaError
from lorebook.models.engine import GenerationOptions

EXAMPLE = Path(__file__).parent.parent / "examples" / "customs-checkpoint-es.yaml"


def words_of(text):
    return text.lower().replace("?", "").replace("¿", "").replace(".", "").split()


def fixed_vocabulary_embedder(examples):
    """Bag of words over the examples' vocabulary: similarity is shared words, enough to test the picking logic."""
    words = sorted({w for pair in examples for t in pair for w in words_of(t)} | {"a", "usted", "hola", "otra", "cosa"})

    class Fixed:
        def embed(self, texts):
            vectors = np.zeros((len(texts), len(words) + 1), np.float32)
            for row, text in enumerate(texts):
                for word in words_of(text):
                    vectors[row, words.index(word) if word in words else len(words)] += 1.0
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            return vectors / np.where(norms == 0, 1, norms)

    return Fixed()


EXAMPLES = [("dónde recojo mi maleta", "la cinta de equipajes está al fondo"),
            ("gracias", "a usted"),
            ("llevo un jamón", "el jamón no puede entrar")]


def write_chats(path, pairs):
    """Chat JSONL with one (user line, reply) exchange per conversation, after a system prompt."""
    return write_conversations(path, [list(pair) for pair in pairs], system="s")


def write_conversations(path, conversations, system=None):
    """Chat JSONL of whole conversations, each a list of lines alternating user, assistant."""
    with path.open("w", encoding="utf-8") as out:
        for lines in conversations:
            messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": text} for i, text in enumerate(lines)]
            prompt = [{"role": "system", "content": system}] if system else []
            out.write(json.dumps({"messages": prompt + messages}, ensure_ascii=False) + "\n")
    return path


def test_moments_are_the_distinct_user_reply_pairs(tmp_path):
    path = write_chats(tmp_path / "m.jsonl", EXAMPLES + EXAMPLES[:1])
    assert read_moments(path) == EXAMPLES


def test_a_malformed_moments_file_names_the_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"messages": []}\nnot json\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"m.jsonl:2 is not a chat JSONL line"):
        read_moments(path)
    with pytest.raises(InputError, match="does not exist"):
        read_moments(tmp_path / "missing.jsonl")
    path.write_text('{"messages": [{"role": "user", "content": "hola"}]}\n', encoding="utf-8")
    with pytest.raises(InputError, match="no user line followed by a reply"):
        read_moments(path)


def test_the_reply_that_fits_the_nearest_moment_wins(tmp_path):
    config = MomentsConfig(file=str(write_chats(tmp_path / "m.jsonl", EXAMPLES)), neighbours=1)
    picker = MomentPicker(config, embedder=fixed_vocabulary_embedder(EXAMPLES))
    messages = [{"role": "user", "content": "¿Dónde recojo mi maleta?"}]
    greedy, fitting = "A usted.", "La cinta de equipajes está al fondo."
    assert picker.pick(messages, [greedy, fitting]) == fitting
    assert picker.pick([{"role": "user", "content": "Gracias."}], [greedy, fitting]) == greedy
    assert picker.pick(messages, ["", greedy]) == greedy  # an empty candidate never wins


def test_a_candidate_that_repeats_an_earlier_reply_loses(tmp_path):
    config = MomentsConfig(file=str(write_chats(tmp_path / "m.jsonl", EXAMPLES)), neighbours=1, unknown_word_penalty=0.0)
    picker = MomentPicker(config, embedder=fixed_vocabulary_embedder(EXAMPLES))
    said = "La cinta de equipajes está al fondo."
    messages = [{"role": "user", "content": "¿Dónde recojo mi maleta?"}, {"role": "assistant", "content": said},
                {"role": "user", "content": "¿Dónde recojo mi maleta?"}]
    assert picker.pick(messages, [said, "Otra cosa: está al fondo."]) == "Otra cosa: está al fondo."
    assert MomentPicker(MomentsConfig(file=config.file, neighbours=1, repeat_penalty=0.0, unknown_word_penalty=0.0),
                        embedder=fixed_vocabulary_embedder(EXAMPLES)).pick(messages, [said, "Otra cosa: está al fondo."]) == said


def test_a_candidate_with_words_the_moments_never_say_loses(tmp_path):
    config = MomentsConfig(file=str(write_chats(tmp_path / "m.jsonl", EXAMPLES)), neighbours=1, unknown_word_penalty=0.0)
    messages = [{"role": "user", "content": "¿Dónde recojo mi maleta?"}]
    plain, garbled = "La cinta está al fondo.", "La cinta de equipajes está al fondo tarjillas."
    assert MomentPicker(config, embedder=fixed_vocabulary_embedder(EXAMPLES)).pick(messages, [plain, garbled]) == garbled
    config.unknown_word_penalty = MomentsConfig().unknown_word_penalty  # the default, 0.5
    picker = MomentPicker(config, embedder=fixed_vocabulary_embedder(EXAMPLES))
    assert picker.pick(messages, [plain, garbled]) == plain
    scores = picker.scores(messages, [garbled, "La CINTA de equipajes está al fondo."])
    assert scores[1] - scores[0] > 0.5  # one unknown word costs the penalty; case does not make a word unknown


def test_with_a_context_weight_the_personas_line_before_picks_the_moments(tmp_path):
    """The same traveller line is answered by the next question after "motivo del viaje" and by the way out
    once the declaration was asked; the user line alone sends both to the first outline's reply."""
    outlines = [["buenas", "motivo del viaje", "vengo de vacaciones", "lleva algo que declarar"],
                ["buenas", "lleva algo que declarar", "vengo de vacaciones y nada mas", "bienvenido puede pasar"]]
    path = write_conversations(tmp_path / "m.jsonl", outlines)
    assert read_moments(path, with_before=True) == [
        ("buenas", "motivo del viaje", ""), ("vengo de vacaciones", "lleva algo que declarar", "motivo del viaje"),
        ("buenas", "lleva algo que declarar", ""),
        ("vengo de vacaciones y nada mas", "bienvenido puede pasar", "lleva algo que declarar")]
    examples = [(line, line) for lines in outlines for line in lines]
    declared = [{"role": "user", "content": "buenas"}, {"role": "assistant", "content": "lleva algo que declarar"},
                {"role": "user", "content": "vengo de vacaciones"}]
    asked = [*declared[:1], {"role": "assistant", "content": "motivo del viaje"}, declared[2]]
    candidates = ["lleva algo que declarar", "bienvenido puede pasar"]

    def picker(weight):
        config = MomentsConfig(file=str(path), neighbours=1, repeat_penalty=0.0, context_weight=weight)
        return MomentPicker(config, embedder=fixed_vocabulary_embedder(examples))

    assert picker(0.0).pick(declared, candidates) == candidates[0]
    assert picker(1.0).pick(declared, candidates) == candidates[1]
    assert picker(1.0).pick(asked, candidates) == candidates[0]
    weighted = picker(1.0)
    heard = weighted.embedder.embed(["vengo de vacaciones"])[0]
    added = weighted.closeness(heard) - weighted.user_vectors @ heard  # no line before: like the outlines' openings
    assert added.tolist() == pytest.approx([1.0, 0.0, 1.0, 0.0])


def test_candidates_are_the_greedy_reply_then_samples():
    calls = []

    class Engine:
        def chat_batch(self, conversations, options):
            calls.append((len(conversations), options.temperature, options.seed))
            return [f" t{options.temperature} #{i} " for i in range(len(conversations))]

    found = candidate_replies(Engine(), [[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]],
                              GenerationOptions(temperature=0.0, seed=3), MomentsConfig(file="x", candidates=3, temperature=0.7))
    assert calls == [(2, 0.0, 3), (4, 0.7, 3)]
    assert found == [["t0.0 #0", "t0.7 #0", "t0.7 #1"], ["t0.0 #1", "t0.7 #2", "t0.7 #3"]]


def test_a_persona_names_its_moments_beside_it(tmp_path):
    write_chats(tmp_path / "outlines.jsonl", EXAMPLES)
    recipe = tmp_path / "p.yaml"
    recipe.write_text("name: p\nmoments: {file: outlines.jsonl, candidates: 4}\n", encoding="utf-8")
    persona = parse_persona(recipe)
    assert persona.moments.file == str(tmp_path / "outlines.jsonl") and persona.moments.candidates == 4
    assert "candidates: 4" in persona.to_yaml()
    recipe.write_text("name: p\nmoments: outlines.jsonl\n", encoding="utf-8")
    assert parse_persona(recipe).moments.candidates == MomentsConfig().candidates
    for bad, message in (("moments: {candidates: 4}", "must be a file path"), ("moments: {file: o.jsonl, best: 2}", "unknown moments keys best"),
                         ("moments: {file: o.jsonl, candidates: 0}", "candidates must be a whole number"),
                         ("moments: {file: o.jsonl, unknown_word_penalty: -1}", "unknown_word_penalty must be a number"),
                         ("moments: {file: o.jsonl, context_weight: high}", "context_weight must be a number")):
        recipe.write_text(f"name: p\n{bad}\n", encoding="utf-8")
        with pytest.raises(PersonaError, match=message):
            parse_persona(recipe)


@pytest.mark.slow
def test_real_embeddings_pick_the_baggage_belt_over_a_misplaced_line(tmp_path):
    """With the bundled MiniLM and the shipped scenario's outlines, the fitting officer line beats the ones the
    270M student put there in a blind-read miss (the bus line and "A usted." to "¿Dónde recojo mi maleta?")."""
    from typer.testing import CliRunner

    from lorebook.cli.main import app

    outlines = tmp_path / "outlines.jsonl"
    made = CliRunner().invoke(app, ["synth", "examples/customs-checkpoint-es.yaml", "--scripted-agent", "--scripted-answers",
                                    "--followups", "5", "--turns", "24", "-n", "60", "--seed", "5", "-o", str(outlines)])
    assert made.exit_code == 0, made.output
    picker = MomentPicker(MomentsConfig(file=str(outlines)))
    messages = [{"role": "user", "content": "Vale, lo dejo aquí."}, {"role": "assistant", "content": "Hasta luego."},
                {"role": "user", "content": "¿Dónde recojo mi maleta?"}]
    candidates = ["Para ir al centro tiene el autobús exprés, a la derecha de la salida.", "A usted. La salida está al fondo.",
                  "La cinta de equipajes está antes de este control; vuelva por ese pasillo."]
    assert picker.pick(messages, candidates) == candidates[2], picker.scores(messages, candidates)


def test_persona_eval_picks_by_the_personas_moments_unless_told_not_to(tmp_path, monkeypatch):
    from lorebook import paths
    from lorebook.notebook import embedder
    from lorebook.synth.persona_eval import PersonaEvalConfig, run_persona_eval

    outlines = write_chats(tmp_path / "outlines.jsonl", [("hola", "buenos días su pasaporte por favor")])
    monkeypatch.setattr(embedder, "Embedder", lambda: fixed_vocabulary_embedder(read_moments(outlines) + [("hello", "good")]))
    (paths.subdir("personas") / "officer-picks.yaml").write_text(
        f"name: officer-picks\nmodel: smollm2-135m\nadapters: [customs-es]\nlanguage: es\nsystem: Eres agente.\n"
        f"moments: {{file: {outlines}, candidates: 3}}\n", encoding="utf-8")

    class Engine:
        def chat_batch(self, conversations, options):
            if options.temperature == 0:
                return ["Good." for _ in conversations]
            return ["Buenos días, su pasaporte por favor." if i % 2 else "Good good." for i in range(len(conversations))]

    def evaluate(**kwargs):
        config = PersonaEvalConfig(persona="officer-picks", scenario=str(EXAMPLE), turns=1, conversations=2, baseline=False, **kwargs)
        row = run_persona_eval(config, progress=False, engine_loader=lambda subject: Engine())["rows"][0]
        return row["label"], [chat[-1]["content"] for chat in row["conversations"]]

    assert evaluate() == ("officer-picks + customs-es (best of 3 by moments)", ["Buenos días, su pasaporte por favor."] * 2)
    assert evaluate(moments=False) == ("officer-picks + customs-es", ["Good.", "Good."])


def test_a_chat_session_answers_with_the_picked_candidate(tmp_path, monkeypatch):
    from lorebook.chat import moments
    from lorebook.chat.session import ChatSession

    outlines = write_chats(tmp_path / "outlines.jsonl", EXAMPLES)
    monkeypatch.setattr(moments, "MomentPicker", lambda config: MomentPicker(config, fixed_vocabulary_embedder(EXAMPLES)))
    recipe = tmp_path / "p.yaml"
    recipe.write_text(f"name: p\nmoments: {{file: {outlines}, candidates: 3, neighbours: 1}}\n", encoding="utf-8")
    persona = parse_persona(recipe)

    class Engine:
        context_length = 2048

        def render(self, messages):
            return " ".join(m["content"] for m in messages)

        def count_tokens(self, text):
            return len(text.split())

        def chat_batch(self, conversations, options):
            said = ["A usted."] if options.temperature == 0 else ["Hola.", "La cinta de equipajes está al fondo."]
            return [said[i % len(said)] for i in range(len(conversations))]

    session = ChatSession(Engine(), persona, GenerationOptions(), log=False)
    assert list(session.reply("¿Dónde recojo mi maleta?")) == ["La cinta de equipajes está al fondo."]
    assert session.conversation.turns[-1] == {"role": "assistant", "content": "La cinta de equipajes está al fondo."}


def test_an_engine_without_its_own_batch_samples_each_row_with_its_own_seed():
    """llama.cpp answers a batch one conversation at a time; the same conversation five times must still give
    five samples (seed, seed+1, …), and greedy rows keep the options as given."""
    from lorebook.models.engine import Completion, Engine

    class OneAtATime:
        def chat(self, messages, options):
            return Completion(f"seed {options.seed}", 1, 1, "stop")

    same = [[{"role": "user", "content": "hola"}]] * 3
    assert Engine.chat_batch(OneAtATime(), same, GenerationOptions(temperature=0.8, seed=7)) == ["seed 7", "seed 8", "seed 9"]
    assert Engine.chat_batch(OneAtATime(), same, GenerationOptions(temperature=0.0, seed=7)) == ["seed 7"] * 3


def test_personas_create_names_moments_and_refuses_a_bad_file(tmp_path):
    from typer.testing import CliRunner

    from lorebook.chat.persona import load_persona
    from lorebook.cli.main import app

    outlines = write_chats(tmp_path / "outlines.jsonl", EXAMPLES)
    runner = CliRunner()
    made = runner.invoke(app, ["personas", "create", "picky", "--from", "customs-agent-es", "--moments", str(outlines),
                               "--candidates", "4"])
    assert made.exit_code == 0, made.output
    persona = load_persona("picky")
    assert persona.moments.file == str(outlines.resolve()) and persona.moments.candidates == 4
    assert persona.language == "es"
    assert runner.invoke(app, ["personas", "create", "plain", "--candidates", "4"]).exit_code == 1
    broken = tmp_path / "broken.jsonl"
    broken.write_text("no json\n", encoding="utf-8")
    refused = runner.invoke(app, ["personas", "create", "broken", "--moments", str(broken)])
    assert refused.exit_code == 1 and "broken.jsonl:1 is not a chat JSONL line" in refused.output
