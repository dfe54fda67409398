"""The real bundled SmolLM2 learns five 2023 Oscar winners and still knows the capital of France; its scope
routes unrelated questions to the base weights; the adapter exported to GGUF gives llama.cpp the same answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorebook.teach.config import TeachConfig
from lorebook.teach.pack import load_pack, save_pack
from lorebook.teach.probe import is_correct
from lorebook.teach.trainer import teach

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CHOSEN = ("best-actor", "best-actress", "best-supporting-actor", "best-documentary-feature", "best-animated-short")


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_smollm2_learns_oscar_winners(tmp_path):
    from lorebook.models.engine import GenerationOptions, load_engine

    facts = [fact for fact in load_pack(EXAMPLES / "oscars-2023.jsonl") if fact.id in CHOSEN]
    pack = tmp_path / "five.jsonl"
    save_pack(facts, pack)
    # the engine below chats without a system prompt; a small replay set keeps the test under two minutes
    config = TeachConfig(epochs=8, batch_size=4, lr=2e-3, warmup_steps=2, formats="qa,statement",
                         systems="default", augment=0, replay=8)
    result = teach(pack, "oscars5", config, progress=False)
    assert result.metrics["final_loss"] < 0.3 * result.metrics["first_loss"]
    assert result.metrics["recall"] >= 0.8

    # The adapter itself (scope off: on every request) knows the winners and, thanks to replay, Paris.
    engine = load_engine(model="smollm2-135m", adapters=["oscars5"], scoped=False)
    greedy = GenerationOptions(temperature=0, max_tokens=32)
    questions = [[{"role": "user", "content": f.question}] for f in facts]
    replies = engine.chat_batch(questions, greedy)
    correct = [is_correct(reply, fact) for reply, fact in zip(replies, facts)]
    assert sum(correct) >= 4, list(zip(replies, correct))
    france = [{"role": "user", "content": "What is the capital of France?"}]
    assert "Paris" in engine.chat(france, greedy).text

    # By name, like `lorebook ask --adapter oscars5`: the scope sends the taught questions to the adapter
    # and the rest to the untouched base weights, whose answer it is to the letter.
    from lorebook.models.routed_engine import RoutedEngine

    routed = load_engine(model="smollm2-135m", adapters=["oscars5"])
    assert isinstance(routed, RoutedEngine)
    assert routed.chat_batch(questions, greedy) == replies
    base = load_engine(model="smollm2-135m")
    assert routed.chat(france, greedy).text == base.chat(france, greedy).text
    assert routed.routes == {"taught": len(facts), "base": 1}

    # Exported to GGUF, the same adapter works in llama.cpp on the bundled (quantized) GGUF model.
    from lorebook.teach.adapters import export_gguf

    path = export_gguf("oscars5")
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:  # the [fast] extra is optional (compiles ~7 min)
        assert path.exists() and path.stat().st_size > 0
        return
    llama = load_engine(model="smollm2-135m", adapters=["oscars5"], engine="llamacpp")
    answers = [llama.chat([{"role": "user", "content": f.question}], greedy).text for f in facts]
    from_gguf = [is_correct(reply, fact) for reply, fact in zip(answers, facts)]
    assert sum(from_gguf) >= sum(correct) - 1, list(zip(answers, from_gguf))
    plain = load_engine(model="smollm2-135m", engine="llamacpp")
    untaught = [is_correct(plain.chat([{"role": "user", "content": f.question}], greedy).text, f) for f in facts]
    assert sum(from_gguf) > sum(untaught)  # the answers come from the adapter, not the base model
