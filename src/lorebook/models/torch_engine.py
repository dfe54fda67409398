"""The torch engine: transformers weights, our own decode loop, streaming text.

Two paths share one loop. Llama-architecture models run through `FastLlama` (fused weights,
in-place KV cache, int8 by default); anything else runs the transformers model step by step with
its KV cache (`quantize="bf16"` puts every model on this path in bfloat16, for CPUs that compute it).
Adapters are merged into the weights at load, so a taught model decodes as fast as the base. Batched generation for evaluation and data synthesis uses `transformers.generate` with
left padding, where batching pays for the Python overhead.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from lorebook.models import fast_llama
from lorebook.models.engine import Completion, Engine, GenerationOptions, Message, cut_at_stop, held_back
from lorebook.models.loader import attach_adapters, load_model
from lorebook.models.registry import ModelSpec
from lorebook.models.sampling import (
    DryPenalty,
    RepetitionPenalty,
    ReplyNgramBlocker,
    Sampler,
    dry_breaker_ids,
)

# A short, varied conversation whose activations calibrate int8 smoothing (fast_llama.smooth).
CALIBRATION_CHAT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {
        "role": "user",
        "content": "Tell me about the history of Rome, the chemistry of water, and how to compute 17 times 23. "
        "¿Dónde está la estación de tren? Write a short poem about the sea.",
    },
    {
        "role": "assistant",
        "content": "Rome was founded, according to legend, in 753 BC. Water is H2O: two hydrogen atoms and one "
        "oxygen atom. 17 × 23 = 391. La estación está al final de la calle. The sea is wide and blue, "
        "it sings all night to you.",
    },
]
END_OF_TURN_TOKENS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|endoftext|>", "</s>", "<|end|>")


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX): there a bf16 forward runs 2-5x
    faster than fp32 (a 400x1536x8960 matmul: 96 vs 235 ms on one Zen 4 core); elsewhere it is emulated, slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class TorchEngine(Engine):
    """Streaming generation on CPU with transformers weights."""

    name = "torch"

    def __init__(self, spec: ModelSpec, model, tokenizer, quantize: str = "int8", context_length: int = 4096):
        self.spec = spec
        self.model_name = spec.name
        self.model = model
        self.tokenizer = tokenizer
        limit = getattr(model.config, "max_position_embeddings", context_length) or context_length
        self.context_length = min(limit, context_length)
        self.fast = None
        if quantize == "bf16":
            self.model = model.to(torch.bfloat16)
        elif fast_llama.supports(model):
            calibration = self.encode_prompt(self.render(CALIBRATION_CHAT, add_generation_prompt=False))
            self.fast = fast_llama.FastLlama(model, self.context_length, quantize, calibration_ids=calibration)
        self.quantize = quantize if self.fast or quantize == "bf16" else "none"
        self.stop_ids = self._end_of_turn_ids()
        self.dry_breakers = dry_breaker_ids(tokenizer) | self.stop_ids
        self.last = Completion("", 0, 0, "stop")

    @classmethod
    def load(
        cls,
        spec: ModelSpec,
        adapters: list[str],
        threads: int | None = None,
        quantize: str = "int8",
        context_length: int = 4096,
        scoped: bool = True,
    ) -> Engine:
        """Load a registry model (and merged adapters) ready to generate.

        Adapters with a scope (knowledge packs) make a RoutedEngine unless `scoped=False`: the taught
        copy answers in-scope requests, a copy with only the unscoped adapters answers the rest.
        """
        from lorebook.models.routed_engine import RoutedEngine, adapter_scopes, merged_scope

        torch.set_num_threads(threads or os.cpu_count() or 1)
        model, tokenizer = load_model(spec)
        scopes = adapter_scopes(adapters) if adapters and scoped else {}
        base = None
        if scopes:
            rest = [a for a in adapters if a not in scopes]
            base = attach_adapters(copy.deepcopy(model), spec, rest, merge=True)
        if adapters:
            model = attach_adapters(model, spec, adapters, merge=True)
        taught = cls(spec, model, tokenizer, quantize=quantize, context_length=context_length)
        if base is None:
            return taught
        base_engine = cls(spec, base, tokenizer, quantize=quantize, context_length=context_length)
        return RoutedEngine(base_engine, taught, merged_scope(list(scopes.values())))

    def _end_of_turn_ids(self) -> set[int]:
        ids: set[int] = set()
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        vocab = self.tokenizer.get_vocab()
        ids.update(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab)
        return ids

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def render(self, messages: list[Message], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids of a prompt, with the tokenizer's leading special tokens (BOS) unless already there."""
        ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        prefix = self.tokenizer.encode("", add_special_tokens=True)
        if prefix and ids[: len(prefix)] != prefix:
            ids = prefix + ids
        return ids

    def _steps(self, ids: list[int]) -> Iterator[torch.Tensor]:
        """Logits for each next position: the prompt first, then after each token sent back in."""
        if self.fast is not None:
            pos = 0
            chunk = torch.tensor([ids])
            while True:
                logits = self.fast(chunk, pos)
                pos += chunk.shape[1]
                token = yield logits
                chunk = torch.tensor([[token]])
        else:
            from transformers import DynamicCache

            cache = DynamicCache()
            chunk = torch.tensor([ids])
            with torch.inference_mode():
                while True:
                    out = self.model(input_ids=chunk, past_key_values=cache, use_cache=True)
                    token = yield out.logits[0, -1]
                    chunk = torch.tensor([[token]])

    def stream_prompt(self, prompt: str, options: GenerationOptions) -> Iterator[str]:
        ids = self.encode_prompt(prompt)
        budget = self.context_length - len(ids)
        if budget <= 0:
            raise ValueError(f"prompt of {len(ids)} tokens does not fit the {self.context_length}-token context")
        max_new = min(options.max_tokens, budget)
        sampler = Sampler(options, ids, self.dry_breakers, frozenset(self.stop_ids))
        steps = self._steps(ids)
        logits = next(steps)
        generated: list[int] = []
        emitted, sent = "", 0  # sent: characters already yielded; local, so an abandoned stream leaves no trace
        prefix, read = 0, 0
        finish = "length"
        started = time.perf_counter()
        for _ in range(max_new):
            token = sampler(logits)
            if token in self.stop_ids:
                finish = "stop"
                break
            generated.append(token)
            sampler.add(token)
            # Incremental detokenization: decode a short window so multi-byte characters come out whole.
            before = self.tokenizer.decode(generated[prefix:read], skip_special_tokens=True)
            after = self.tokenizer.decode(generated[prefix:], skip_special_tokens=True)
            if len(after) > len(before) and not after.endswith("\ufffd"):
                emitted += after[len(before) :]
                prefix, read = read, len(generated)
            text, stopped = cut_at_stop(emitted, options.stop)
            if stopped:
                finish = "stop"
                break
            safe = len(emitted) - held_back(emitted, options.stop)
            if safe > sent:
                yield emitted[sent:safe]
                sent = safe
            if len(generated) < max_new:
                logits = steps.send(token)
        steps.close()
        final, _ = cut_at_stop(emitted, options.stop)
        if len(final) > sent:
            yield final[sent:]
        self.last = Completion(final, len(ids), len(generated), finish)
        self.last_seconds = time.perf_counter() - started

    def chat_batch(self, conversations: list[list[Message]], options: GenerationOptions | None = None) -> list[str]:
        """Replies to many conversations in one padded batch (throughput for eval and synth)."""
        options = options or GenerationOptions()
        prompts = [self.render(messages) for messages in conversations]
        tok = self.tokenizer
        tok.padding_side = "left"
        batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        sampling = options.temperature > 0
        kwargs = dict(
            max_new_tokens=options.max_tokens,
            do_sample=sampling,
            eos_token_id=sorted(self.stop_ids),
            pad_token_id=tok.pad_token_id,
        )
        if sampling:
            kwargs.update(temperature=options.temperature, top_k=options.top_k or None, top_p=options.top_p)
            if options.seed is not None:
                torch.manual_seed(options.seed)
        else:
            kwargs.update(temperature=None, top_k=None, top_p=None)
        processors = []
        if options.repetition_penalty != 1.0:
            processors.append(RepetitionPenalty(options.repetition_penalty, frozenset(self.stop_ids)))
        if options.no_repeat_ngram > 1:
            processors.append(ReplyNgramBlocker(options.no_repeat_ngram, batch["input_ids"].shape[1]))
        if options.dry_multiplier > 0:
            processors.append(DryPenalty(options, self.dry_breakers, tok.pad_token_id))
        if processors:
            from transformers import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList(processors)
        with torch.inference_mode():
            out = self.model.generate(**batch, **kwargs)
        replies = tok.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        return [cut_at_stop(reply, options.stop)[0] for reply in replies]
