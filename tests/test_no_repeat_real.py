"""`no_repeat_ngram` on the real SmolLM2, in both engines: a greedy echo loop is broken.

Each engine gets a prompt it loops on: llama.cpp runs the GGUF's own quantized weights and the torch
engine de-quantized ones, so their greedy replies differ.
"""

from __future__ import annotations

import pytest

from lorebook.models.engine import GenerationOptions, load_engine

LOOSE = GenerationOptions(temperature=0, max_tokens=32, repetition_penalty=1.0)
CASES = {
    "torch": ("Count: one, one, one, one, one,", "one, one"),  # "One, one, one, …"
    "llamacpp": ("Repeat after me: hello hello hello hello hello hello", "hello hello"),
}


@pytest.mark.slow
@pytest.mark.parametrize("engine_name", sorted(CASES))
def test_no_repeat_ngram_breaks_an_echo_loop(engine_name):
    if engine_name == "llamacpp":
        pytest.importorskip("llama_cpp", reason="the llamacpp engine is optional: pip install 'lorebook[fast]'")
    prompt, pair = CASES[engine_name]
    engine = load_engine("smollm2-135m", engine=engine_name)
    messages = [{"role": "user", "content": prompt}]
    loose = engine.chat(messages, LOOSE).text.lower()
    blocked = engine.chat(messages, LOOSE.updated(no_repeat_ngram=2)).text.lower()
    assert loose.count(pair) >= 3, loose  # the loop the option is for
    assert blocked.count(pair) <= 1, blocked  # the pair of tokens may occur once, never again
