"""The bundled real models answer sensibly through the whole stack."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lorebook.models import GenerationOptions, load_engine

pytestmark = pytest.mark.slow


def test_lorebook_ask_answers_paris_with_the_default_model():
    """Greedy: `ask` samples at temperature 0.7 by default, and one sampled answer of a fresh clone's CI-style
    run called France "the capital city of Albania"; what this checks is the stack, not the dice."""
    proc = subprocess.run([sys.executable, "-m", "lorebook", "ask", "-o", "temperature=0",
                           "What is the capital of France?"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Paris" in proc.stdout


def test_multi_turn_chat_remembers_context():
    # float32: the int8 kernels differ between CPUs, and on an Intel (AVX-512/AMX) machine the greedy int8
    # reply wanders off ("The name of the most beautiful one in the world…") where the AMD one answers
    engine = load_engine("smollm2-135m", quantize="none")
    options = GenerationOptions(temperature=0, max_tokens=40)
    messages = [{"role": "user", "content": "My name is Alice. Please remember it."}]
    messages.append({"role": "assistant", "content": engine.chat(messages, options).text})
    messages.append({"role": "user", "content": "What is my name?"})
    assert "Alice" in engine.chat(messages, options).text


def test_int8_and_fp32_agree_on_a_fact():
    options = GenerationOptions(temperature=0, max_tokens=20)
    question = [{"role": "user", "content": "What is the capital of Japan?"}]
    for quantize in ("int8", "none"):
        assert "Tokyo" in load_engine("smollm2-135m", quantize=quantize).chat(question, options).text


def test_gemma_base_model_continues_text():
    engine = load_engine("gemma3-270m")
    prompt = "La capital de Francia es París. La capital de Italia es Roma. La capital de España es"
    reply = engine.complete(prompt, GenerationOptions(temperature=0, max_tokens=8)).text
    assert "Madrid" in reply
    assert engine.render([{"role": "user", "content": "hola"}]).startswith("<bos><start_of_turn>user\nhola")
