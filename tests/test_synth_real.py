"""The generator and the persona evaluation on the real bundled SmolLM2 (one engine load for both)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent.parent / "examples" / "customs-checkpoint-es.yaml"


@pytest.mark.slow
def test_real_teacher_conversations_and_persona_eval(tmp_path):
    from lorebook.models.engine import load_engine
    from lorebook.synth.persona_eval import PersonaEvalConfig, run_persona_eval
    from lorebook.synth.runner import SynthConfig, run_synth
    from lorebook.synth.scenario import load_scenario
    from lorebook.synth.teachers import LocalTeacher

    engine = load_engine("smollm2-135m", threads=1)
    scenario = load_scenario(EXAMPLE)
    scenario.agent.max_tokens = scenario.traveller.max_tokens = 16  # mechanics, not quality: keep it short
    out = tmp_path / "convs.jsonl"
    report = run_synth(scenario, SynthConfig(n=2, turns=3, batch_size=2, check_language=False, dedup=1.0), out,
                       teacher=LocalTeacher(engine), progress=False)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert report["kept"] + report["dropped"] == 2 and records
    agent_turns = [t["text"] for r in records for t in r["metadata"]["turns"] if t["role"] == "agent"]
    assert agent_turns and all(text.strip() for text in agent_turns)

    result = run_persona_eval(
        PersonaEvalConfig(persona="customs-agent-es", scenario=str(EXAMPLE), turns=2, conversations=2,
                          max_tokens=16, references=str(out)),
        progress=False, engine_loader=lambda subject: engine)
    (row,) = result["rows"]  # the shipped persona has no adapters, so no separate baseline
    metrics = row["metrics"]
    assert metrics["language"]["n"] == 4 and 0 <= metrics["language"]["value"] <= 1
    assert metrics["chrf"]["n"] >= 1 and 0 <= metrics["chrf"]["value"] <= 100
    perplexity = metrics["perplexity"]["value"]
    assert math.isfinite(perplexity) and 1 < perplexity < 50_000


@pytest.mark.slow
def test_llamacpp_teacher_writes_conversations(tmp_path):
    """`--engine llamacpp`: the GGUF as quantized, conversations one at a time, through the same runner."""
    pytest.importorskip("llama_cpp")
    from lorebook.synth.runner import SynthConfig, run_synth
    from lorebook.synth.scenario import load_scenario

    scenario = load_scenario(EXAMPLE)
    scenario.agent.max_tokens = scenario.traveller.max_tokens = 16
    out = tmp_path / "convs.jsonl"
    config = SynthConfig(n=2, turns=3, batch_size=2, teacher="smollm2-135m", engine="llamacpp", threads=1,
                         check_language=False, check_topics=False, dedup=1.0, retries=0)
    report = run_synth(scenario, config, out, progress=False)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert report["kept"] + report["dropped"] == 2 and records
    assert all(r["metadata"]["teacher"] == "local:smollm2-135m" for r in records)
    assert all(t["text"].strip() for r in records for t in r["metadata"]["turns"])
