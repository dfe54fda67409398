"""The torch engine on a tiny random llama: exact fast path, streaming, stops, seeds, batching."""

from __future__ import annotations

import pytest
import torch

from lorebook.errors import InputError
from lorebook.models.engine import GenerationOptions, held_back
from lorebook.models.fast_llama import LINEARS, FastLlama
from lorebook.models.loader import load_model
from lorebook.models.registry import resolve_model
from lorebook.models.torch_engine import TorchEngine

MESSAGES = [{"role": "user", "content": "Tell me something."}]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    spec = resolve_model(str(tiny_model_dir))
    model, tokenizer = load_model(spec)
    return TorchEngine(spec, model, tokenizer, quantize="none", context_length=256)


def test_fast_path_matches_transformers_logits(tiny_model_dir):
    """The compact forward must give the same logits as HF, at prefill and at each cached step."""
    model, _ = load_model(resolve_model(str(tiny_model_dir)))
    fast = FastLlama(model, max_len=64, quantize="none")
    ids = torch.tensor([[1, 50, 700, 33, 9000, 12]])
    with torch.inference_mode():
        reference = model(ids).logits[0]
    assert torch.allclose(fast(ids[:, :4], 0), reference[3], atol=1e-4)
    assert torch.allclose(fast(ids[:, 4:5], 4), reference[4], atol=1e-4)
    assert torch.allclose(fast(ids[:, 5:6], 5), reference[5], atol=1e-4)


def test_chunk_after_cache_matches(tiny_model_dir):
    """A multi-token chunk after cached tokens uses the offset causal mask."""
    model, _ = load_model(resolve_model(str(tiny_model_dir)))
    fast = FastLlama(model, max_len=64, quantize="none")
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11]])
    with torch.inference_mode():
        reference = model(ids).logits[0]
    fast(ids[:, :3], 0)
    assert torch.allclose(fast(ids[:, 3:], 3), reference[-1], atol=1e-4)


def test_int8_path_stays_close_to_fp32(tiny_model_dir):
    model, _ = load_model(resolve_model(str(tiny_model_dir)))
    ids = torch.tensor([[1, 50, 700, 33]])
    exact = FastLlama(model, 64, quantize="none")(ids, 0)
    quantized = FastLlama(model, 64, quantize="int8")(ids, 0)
    assert torch.nn.functional.cosine_similarity(exact, quantized, dim=0) > 0.99


def test_smoothing_leaves_the_fp32_function_unchanged(tiny_model_dir):
    model, _ = load_model(resolve_model(str(tiny_model_dir)))
    ids = torch.tensor([[1, 50, 700, 33, 8, 91]])
    fast = FastLlama(model, 64, quantize="none")
    before = fast(ids, 0)
    fast._smooth(ids[0].tolist())
    fast.weight_lists = [[layer.weights[name] for name in LINEARS] for layer in fast.layers]
    assert torch.allclose(fast(ids, 0), before, atol=1e-4)
    with torch.inference_mode():
        assert torch.allclose(model(ids).logits[0, -1], before, atol=1e-4)  # the HF model is untouched


def test_smoothed_int8_with_rescoring_matches_fp32_top_token(tiny_model_dir):
    model, _ = load_model(resolve_model(str(tiny_model_dir)))
    ids = torch.tensor([[1, 50, 700, 33]])
    exact = FastLlama(model, 64, quantize="none")(ids, 0)
    quantized = FastLlama(model, 64, quantize="int8", calibration_ids=[1, 2, 3, 50, 700, 33, 8])(ids, 0)
    assert quantized.argmax() == exact.argmax()
    top = exact.topk(5).indices
    assert torch.allclose(quantized[top], exact[top], rtol=0.05, atol=0.05)


def test_streamed_pieces_join_to_the_completion(engine):
    options = GenerationOptions(temperature=0, max_tokens=12)
    pieces = list(engine.stream(MESSAGES, options))
    assert "".join(pieces) == engine.last.text
    assert engine.last.completion_tokens == 12 and engine.last.finish_reason == "length"
    assert engine.chat(MESSAGES, options).text == engine.last.text  # greedy is deterministic


def test_greedy_equals_transformers_generate(engine):
    options = GenerationOptions(temperature=0, max_tokens=10, repetition_penalty=1.0)
    ours = engine.chat(MESSAGES, options).text
    [batched] = engine.chat_batch([MESSAGES], options)
    assert ours == batched


def test_seed_makes_sampling_reproducible(engine):
    options = GenerationOptions(temperature=1.0, max_tokens=15, seed=7)
    first = engine.chat(MESSAGES, options).text
    assert engine.chat(MESSAGES, options).text == first
    assert engine.chat(MESSAGES, options.updated(seed=8)).text != first


def test_stop_string_cuts_the_reply(engine):
    options = GenerationOptions(temperature=0, max_tokens=20)
    full = engine.chat(MESSAGES, options).text
    stop = full[5:8]
    cut = engine.chat(MESSAGES, options.updated(stop=[stop])).text
    assert cut == full[: full.find(stop)] and engine.last.finish_reason == "stop"


def test_held_back_covers_partial_stop_strings():
    assert held_back("hello <|e", ["<|end|>"]) == 3
    assert held_back("hello", ["<|end|>"]) == 0


def test_chat_batch_answers_each_conversation(engine):
    replies = engine.chat_batch([MESSAGES, [{"role": "user", "content": "Hi"}]], GenerationOptions(temperature=0,
                                                                                                     max_tokens=5))
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)


def test_prompt_longer_than_context_is_refused(engine):
    with pytest.raises(ValueError, match="does not fit"):
        list(engine.stream([{"role": "user", "content": "word " * 400}], GenerationOptions(max_tokens=4)))


def test_option_pairs_parse_and_refuse_bad_ones():
    opts = GenerationOptions.parse_pairs(["temperature=0", "max_tokens=9", "stop=a,b", "seed=3"])
    assert (opts.temperature, opts.max_tokens, opts.stop, opts.seed) == (0.0, 9, ["a", "b"], 3)
    with pytest.raises(InputError, match="bad option"):
        GenerationOptions.parse_pairs(["colour=blue"])
    with pytest.raises(InputError, match="needs a number"):
        GenerationOptions.parse_pairs(["top_k=many"])


def test_no_repeat_ngram_counts_the_reply_not_the_prompt():
    from lorebook.models.sampling import ReplyNgramBlocker, Sampler, repeated_ngram_ends

    assert repeated_ngram_ends([5, 6, 7, 5, 6], 3) == {7} and repeated_ngram_ends([5, 6, 7, 5, 6], 0) == set()
    sampler = Sampler(GenerationOptions(temperature=0, repetition_penalty=1.0, no_repeat_ngram=3), seen=[5, 6, 7])
    logits = torch.zeros(10)
    logits[7] = 5.0
    assert sampler(logits.clone()) == 7  # "5 6 7" in the prompt does not count
    for token in (5, 6, 7, 5, 6):
        sampler.add(token)
    assert sampler(logits.clone()) != 7  # it would repeat "5 6 7" within the reply
    prompt_and_reply = torch.tensor([[5, 6, 7, 1, 5, 6]])
    scores = ReplyNgramBlocker(3, prompt_length=3)(prompt_and_reply, torch.zeros(1, 10))
    assert not torch.isinf(scores).any()
    scores = ReplyNgramBlocker(2, prompt_length=0)(prompt_and_reply, torch.zeros(1, 10))
    assert torch.isinf(scores[0, 7])


@pytest.mark.parametrize("blocking", [{"no_repeat_ngram": 2}, {"dry_multiplier": 2.0}])
def test_blocking_breaks_a_greedy_loop_alike_when_streamed_and_batched(engine, monkeypatch, blocking):
    # The random model loops on newlines, which are DRY breakers; without breakers that loop is a run.
    monkeypatch.setattr(engine, "dry_breakers", frozenset(engine.stop_ids))
    options = GenerationOptions(temperature=0, max_tokens=40, repetition_penalty=1.0)
    loose = engine.chat(MESSAGES, options).text
    blocked = options.updated(**blocking)
    streamed = engine.chat(MESSAGES, blocked).text
    [batched] = engine.chat_batch([MESSAGES], blocked)
    assert streamed == batched and streamed != loose


def test_dry_penalty_grows_with_the_run_it_would_extend_and_stops_at_breakers():
    from lorebook.models.sampling import DryPenalty, Sampler, dry_penalties

    options = GenerationOptions(dry_multiplier=0.8, dry_base=2.0, dry_allowed_length=2)
    # "1 2 3 4 | ... 2 3": token 4 would extend a 2-token run ("2 3"), token 9 a 1-token run (free).
    assert dry_penalties([1, 2, 3, 4, 8, 3, 9, 2, 3], options) == {4: 0.8}
    # A longer run costs more: "1 2 3 4 ... 1 2 3" -> 4 extends 3 tokens: 0.8 * 2 ** 1.
    assert dry_penalties([1, 2, 3, 4, 8, 1, 2, 3], options) == {4: 1.6}
    # A run stops at a breaker: with 0 a breaker, "0 2 3" counts as the 2-token run "2 3".
    assert dry_penalties([0, 2, 3, 4, 5, 0, 2, 3], options, frozenset({0})) == {4: 0.8}
    assert dry_penalties([1, 2, 3, 4, 8, 1, 2, 3], options, frozenset({2})) == {}
    assert dry_penalties([1, 2, 3, 4, 8, 1, 2, 3], options.updated(dry_multiplier=0.0)) == {}
    sampler = Sampler(GenerationOptions(temperature=0, repetition_penalty=1.0, dry_multiplier=3.0,
                                        dry_base=2.0, dry_allowed_length=2), seen=[1, 2, 3, 4, 8])
    logits = torch.zeros(10)
    logits[4], logits[5] = 2.0, 1.0
    for token in (1, 2):
        sampler.add(token)
    assert sampler(logits.clone()) == 4  # 3 would extend "1 2" and is penalized; 4 was already likeliest
    sampler.add(3)
    assert sampler(logits.clone()) == 5  # 4 would repeat "1 2 3 4": 2.0 - 3.0 * 2 < 1.0
    padded = torch.tensor([[0, 0, 1, 2, 3, 4, 8, 1, 2, 3]])
    scores = DryPenalty(options, frozenset(), pad_id=0)(padded, torch.zeros(1, 10))
    assert scores[0, 4] == pytest.approx(-1.6) and scores[0].count_nonzero() == 1


def test_bf16_runs_the_transformers_forward_in_bfloat16(tiny_model_dir):
    spec = resolve_model(str(tiny_model_dir))
    model, tokenizer = load_model(spec)
    engine = TorchEngine(spec, model, tokenizer, quantize="bf16", context_length=256)
    assert engine.fast is None and engine.quantize == "bf16"
    assert next(engine.model.parameters()).dtype == torch.bfloat16
    options = GenerationOptions(temperature=0, max_tokens=8, repetition_penalty=1.0)
    reply = engine.chat(MESSAGES, options)
    assert reply.completion_tokens == 8 and engine.chat(MESSAGES, options).text == reply.text
    assert len(engine.chat_batch([MESSAGES, MESSAGES[:1]], options)) == 2


def test_repetition_penalty_spares_the_end_of_turn_tokens():
    """Every earlier chat turn ends with the end-of-turn marker; penalizing it as a repeat kept a LoRA-taught
    base model from ever stopping (its marker logit is nearly tied with untrained tokens)."""
    from transformers import RepetitionPenaltyLogitsProcessor

    from lorebook.models.sampling import RepetitionPenalty, Sampler

    scores = torch.tensor([[2.0, -2.0, 4.0, 3.9, 1.0]])
    seen = torch.tensor([[0, 1, 2]])
    plain = RepetitionPenalty(2.0, frozenset())(seen, scores.clone())
    assert torch.equal(plain, RepetitionPenaltyLogitsProcessor(2.0)(seen, scores.clone()))
    spared = RepetitionPenalty(2.0, frozenset({2}))(seen, scores.clone())
    assert torch.allclose(spared, torch.tensor([[1.0, -4.0, 4.0, 3.9, 1.0]])) and int(spared.argmax()) == 2
    sampler = Sampler(GenerationOptions(temperature=0, repetition_penalty=2.0), seen=[0, 1, 2], exempt=frozenset({2}))
    assert sampler(scores[0].clone()) == 2
    assert Sampler(GenerationOptions(temperature=0, repetition_penalty=2.0), seen=[0, 1, 2])(scores[0].clone()) == 3
