"""The real bundled SmolLM2 learns five 2023 Oscar winners and still knows the capital of France."""

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
    config = TeachConfig(epochs=8, batch_size=4, lr=2e-3, warmup_steps=2, formats="qa,statement",
                          systems="default")  # the engine below chats without a system prompt
    result = teach(pack, "oscars5", config, progress=False)
    assert result.metrics["final_loss"] < 0.3 * result.metrics["first_loss"]
    assert result.metrics["recall"] >= 0.8

    # The adapter is usable by name through the normal engine, like `lorebook ask --adapter oscars5`.
    engine = load_engine(model="smollm2-135m", adapters=["oscars5"])
    greedy = GenerationOptions(temperature=0, max_tokens=32)
    replies = engine.chat_batch([[{"role": "user", "content": f.question}] for f in facts], greedy)
    correct = [is_correct(reply, fact) for reply, fact in zip(replies, facts)]
    assert sum(correct) >= 4, list(zip(replies, correct))
    paris = engine.chat([{"role": "user", "content": "What is the capital of France?"}], greedy).text
    assert "Paris" in paris
