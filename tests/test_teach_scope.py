"""Adapter scope: calibration with the real MiniLM, and routing between taught and base weights (tiny llama)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lorebook.models.engine import GenerationOptions, load_engine
from lorebook.models.routed_engine import RoutedEngine
from lorebook.teach.pack import Fact
from lorebook.teach.scope import AdapterScope, scope_for_facts
from lorebook.teach.trainer import teach

FACTS = [
    Fact("zorbo", "The capital of Zorbo is Quendle.", "What is the capital of Zorbo?", "Quendle", [],
         ["Which city is Zorbo's capital?"]),
    Fact("lamp", "The glimmer lamp was invented by Ada Pell.", "Who invented the glimmer lamp?", "Ada Pell", [],
         ["Who is the inventor of the glimmer lamp?"]),
]
UNRELATED = ["What is the capital of France?", "How many legs does a spider have?", "What is 12 times 12?"]
GREEDY = GenerationOptions(temperature=0, max_tokens=12, repetition_penalty=1.0)


def test_calibration_admits_paraphrases_and_keeps_general_questions_out():
    scope = scope_for_facts(FACTS)
    assert scope.report["in_scope_passed"] == 1.0 and scope.report["out_of_scope_passed"] == 0.0
    # The paraphrases were never shown to calibration; unrelated questions include ones it never saw.
    assert scope.covers([p for fact in FACTS for p in fact.paraphrases]) == [True, True]
    assert scope.covers(UNRELATED + ["Who painted the Mona Lisa?", ""]) == [False] * 5
    # A taught question after small talk is still found; the same small talk around another question is not.
    chatter = "Hi! Long week. I did some gardening, the tomatoes are finally in.\nAnyway, a quiz question: {q}"
    assert scope.covers([chatter.format(q=FACTS[1].question), chatter.format(q=UNRELATED[1])]) == [True, False]


def test_scope_file_round_trip_and_off_switch(tmp_path):
    scope = scope_for_facts(FACTS)
    scope.save(tmp_path)
    loaded = AdapterScope.load(tmp_path)
    assert (loaded.texts, loaded.threshold, loaded.enabled) == (scope.texts, scope.threshold, True)
    assert AdapterScope.load(tmp_path / "missing") is None


@pytest.fixture
def scoped_adapter(tiny_model_dir, tmp_path):
    from lorebook.teach.config import TeachConfig

    pack = tmp_path / "zorbo.jsonl"
    pack.write_text("".join(fact.to_json() + "\n" for fact in FACTS))
    config = TeachConfig(model=str(tiny_model_dir), systems="default", augment=0, replay=0, epochs=3, batch_size=2,
                         lr=5e-2, warmup_steps=1, rank=4, alpha=8.0, schedule="constant")
    result = teach(pack, "zorbo", config, progress=False, probe=False)
    assert result.metrics["scope"]["out_of_scope_passed"] == 0.0
    return result


def chat(engine, question: str) -> str:
    return engine.chat([{"role": "user", "content": question}], GREEDY).text


def test_in_scope_requests_get_the_adapter_and_the_rest_the_base_model(tiny_model_dir, scoped_adapter):
    base = load_engine(str(tiny_model_dir))
    always = load_engine(str(tiny_model_dir), adapters=["zorbo"], scoped=False)
    routed = load_engine(str(tiny_model_dir), adapters=["zorbo"])
    assert isinstance(routed, RoutedEngine) and not isinstance(always, RoutedEngine)

    taught_q, other_q = FACTS[0].question, UNRELATED[0]
    assert chat(always, other_q) != chat(base, other_q)  # the adapter alone does change unrelated answers
    assert chat(routed, other_q) == chat(base, other_q)
    assert chat(routed, taught_q) == chat(always, taught_q)
    assert "".join(routed.stream([{"role": "user", "content": other_q}], GREEDY)) == chat(base, other_q)
    assert routed.last.completion_tokens > 0

    questions = [other_q, taught_q, UNRELATED[1], FACTS[1].paraphrases[0]]
    batch = routed.chat_batch([[{"role": "user", "content": q}] for q in questions], GREEDY)
    expected = [base, always, base, always]
    assert batch == [engine.chat_batch([[{"role": "user", "content": q}]], GREEDY)[0]
                     for engine, q in zip(expected, questions)]
    assert routed.routes == {"taught": 1 + 2, "base": 2 + 2}  # three single requests, then the batch


def test_scope_cli_switches_routing_off_and_on(tiny_model_dir, scoped_adapter):
    from lorebook.cli.main import app

    runner = CliRunner()
    shown = runner.invoke(app, ["adapters", "scope", "zorbo", "-q", "Which city is Zorbo's capital?",
                                "-q", "What is the capital of France?"])
    assert shown.exit_code == 0, shown.output
    assert "in scope → adapter: Which city" in shown.output and "out of scope → base model: What is the capital of F" in shown.output
    assert runner.invoke(app, ["adapters", "scope", "zorbo", "off"]).exit_code == 0
    assert not isinstance(load_engine(str(tiny_model_dir), adapters=["zorbo"]), RoutedEngine)
    assert json.loads((scoped_adapter.path / "scope.json").read_text())["enabled"] is False
    assert runner.invoke(app, ["adapters", "scope", "zorbo", "on"]).exit_code == 0
    assert isinstance(load_engine(str(tiny_model_dir), adapters=["zorbo"]), RoutedEngine)
    bad = runner.invoke(app, ["adapters", "scope", "zorbo", "maybe"])
    assert bad.exit_code != 0 and "use `on` or `off`" in bad.output


def test_chat_adapters_get_no_scope(tiny_model_dir, tmp_path):
    from lorebook.teach.config import TeachConfig

    convs = tmp_path / "chat.jsonl"
    convs.write_text(json.dumps({"messages": [{"role": "user", "content": "Hola"},
                                              {"role": "assistant", "content": "Buenos días, pasaporte por favor."}]}) + "\n")
    config = TeachConfig(model=str(tiny_model_dir), replay=0, epochs=1, batch_size=1, rank=4, alpha=8.0)
    result = teach(convs, "persona", config, progress=False, probe=False)
    assert "scope" not in result.metrics and not (result.path / "scope.json").exists()
    assert not isinstance(load_engine(str(tiny_model_dir), adapters=["persona"]), RoutedEngine)


def test_server_slots_clone_both_copies(tiny_model_dir, scoped_adapter):
    from lorebook.serve.scheduler import clone_engine

    routed = load_engine(str(tiny_model_dir), adapters=["zorbo"])
    twin = clone_engine(routed, 256)
    assert isinstance(twin, RoutedEngine) and twin.scope is routed.scope
    for copy, original in ((twin.base, routed.base), (twin.taught, routed.taught)):
        assert copy.fast.k_cache is not original.fast.k_cache and copy.fast.max_len == 256
    assert chat(twin, UNRELATED[0]) == chat(routed.base, UNRELATED[0])
    assert chat(twin, FACTS[0].question) == chat(routed.taught, FACTS[0].question)
