"""One real evaluation on the bundled SmolLM2: it must answer well-known facts, and the stored run
must carry every metric with n and an interval, including judge-vs-match agreement."""

from __future__ import annotations

import pytest

from lorebook.evaluate import store
from lorebook.evaluate.runner import EvalConfig, run_eval
from lorebook.teach.pack import Fact


@pytest.mark.slow
def test_smollm2_eval_answers_known_facts_and_reports_numbers():
    facts = [
        Fact(id="france", fact="Paris is the capital of France.", question="What is the capital of France?",
             answer="Paris", paraphrases=["Which city is the capital of France?"]),
        Fact(id="best-actor", fact="Brendan Fraser won Best Actor at the 2023 Oscars for The Whale.",
             question="Who won the Academy Award for Best Actor in 2023?", answer="Brendan Fraser",
             aliases=["Fraser"], paraphrases=["Which actor won the Oscar for Best Actor at the 95th Academy Awards?"]),
    ]
    # Small budgets keep this under ~90 s: 8 fact probes + 6 locality + 1 chat prompt, and the judge
    # reuses the evaluated model's engine instead of loading a second one.
    config = EvalConfig(model="smollm2-135m", formats=["question", "paraphrase", "conversation"], locality=6,
                        chat_prompts=1, max_tokens=16, chat_max_tokens=24, batch_size=8, judge="smollm2-135m")
    run_id = run_eval(facts, config, progress=False)
    db = store.connect()
    run = store.get_run(db, run_id)
    items = {i["key"]: i for i in store.get_items(db, run_id)}
    db.close()

    france = items["locality:geo-001:question:0"]
    assert "Paris" in france["reply"] and france["match_grade"] == 1
    assert items["fact:france:question:0"]["match_grade"] == 1
    metrics = run["metrics"]
    assert metrics["efficacy"]["n"] == 2 and metrics["efficacy"]["value"] >= 0.5
    assert metrics["generalization"]["n"] == 2 and metrics["format_conversation"]["n"] == 2
    # The conversation mentions the fact once, so even the base model can answer it from the dialogue.
    assert items["fact:best-actor:conversation:0"]["prompt"][-1]["content"].count("Brendan Fraser won Best Actor") == 1
    assert metrics["known_before"]["n"] == 2
    assert metrics["locality_accuracy_after"]["n"] == 6 and metrics["locality_accuracy_after"]["value"] >= 0.25
    lo, hi = metrics["locality_accuracy_after"]["ci"]
    assert 0 <= lo <= metrics["locality_accuracy_after"]["value"] <= hi <= 1
    assert metrics["degenerate_replies"]["value"] <= 0.2
    assert metrics["judge_agreement"]["n"] + metrics["judge_agreement"]["no_verdict"] == 2 * 3 + 6
