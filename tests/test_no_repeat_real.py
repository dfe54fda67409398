"""`no_repeat_ngram` and DRY on the real SmolLM2, in both engines: a greedy repetition is broken.

Where a greedy reply repeats itself depends on the engine (llama.cpp runs the GGUF's quantized weights,
the torch engine de-quantized ones) and on the CPU's kernels (an AMD and an Intel machine give different
greedy replies to the same prompt), so each run picks the first of several prompts whose plain reply
repeats a two-word run, then checks that blocking removes the repetition.
"""

from __future__ import annotations

import pytest

from lorebook.models.engine import GenerationOptions, load_engine

LOOSE = GenerationOptions(temperature=0, max_tokens=32, repetition_penalty=1.0)
PROMPTS = ("Count: one, one, one, one, one,", "Repeat after me: hello hello hello hello hello hello",
           "Write the word hello ten times.", "Repeat: la la la la la la la la", "Say 'yes' ten times.")


def repeated_pairs(text: str) -> int:
    """How many two-word runs of `text` occurred earlier in it (case and punctuation kept)."""
    words = text.split()
    pairs = list(zip(words, words[1:]))
    return len(pairs) - len(set(pairs))


@pytest.mark.slow
@pytest.mark.parametrize("blocking", ["no_repeat_ngram=2", "dry_multiplier=2.0"])
@pytest.mark.parametrize("engine_name", ["llamacpp", "torch"])
def test_no_repeat_ngram_and_dry_break_a_repetition(engine_name, blocking):
    if engine_name == "llamacpp":
        pytest.importorskip("llama_cpp", reason="the llamacpp engine is optional: pip install 'lorebook[fast]'")
    engine = load_engine("smollm2-135m", engine=engine_name)
    for prompt in PROMPTS:
        messages = [{"role": "user", "content": prompt}]
        loose = engine.chat(messages, LOOSE).text
        if repeated_pairs(loose):
            break
    else:
        pytest.fail(f"no prompt made the greedy {engine_name} reply repeat itself; add one to PROMPTS")
    blocked = engine.chat(messages, GenerationOptions.parse_pairs([blocking], LOOSE)).text
    assert repeated_pairs(blocked) < repeated_pairs(loose), (loose, blocked)
    assert blocked.strip() and blocked != loose
