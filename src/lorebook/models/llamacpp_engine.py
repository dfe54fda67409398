"""The llama.cpp engine: llama-cpp-python over the GGUF file (optional extra `lorebook[fast]`).

Useful as a speed reference and for models transformers cannot load. It reads the GGUF directly
(no conversion), applies the tokenizer's chat template from our cache so prompts match the torch
engine exactly, and loads LoRA adapters only in GGUF form (PEFT adapters must be converted first).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from lorebook.errors import AdapterError, ModelError
from lorebook.models.engine import Completion, Engine, GenerationOptions, Message
from lorebook.models.loader import load_tokenizer, validate_gguf
from lorebook.models.registry import ModelSpec, gguf_path
from lorebook.models.sampling import apply_dry, dry_breaker_ids, repeated_ngram_ends


@contextlib.contextmanager
def without_weight_repacking():
    """Load with llama.cpp's extra weight buffers off (`use_extra_bufts = False`).

    On a CPU that advertises AMX (Xeon Sapphire Rapids and later) llama.cpp repacks the weights into AMX
    tiles, and on the virtual machines this project runs on the first decode then dies with SIGSEGV
    (llama-cpp-python 0.3.36, SmolLM2 Q4_1 and Qwen2.5 Q4_K_M alike). `Llama()` has no argument for it,
    so its default model parameters are wrapped while the model loads. Our quantizations gain little from
    repacking on x86 anyway."""
    from llama_cpp import llama_cpp  # the ctypes module Llama() reads its defaults from

    original = llama_cpp.llama_model_default_params

    def params():
        defaults = original()
        if hasattr(defaults, "use_extra_bufts"):
            defaults.use_extra_bufts = False
        return defaults

    llama_cpp.llama_model_default_params = params
    try:
        yield
    finally:
        llama_cpp.llama_model_default_params = original


def logits_processors(options: GenerationOptions, prompt_length: int, breakers: frozenset[int]) -> list | None:
    """`no_repeat_ngram` and DRY as llama-cpp-python logits processors (it hands them every token so far)."""
    processors = []
    if options.no_repeat_ngram > 1:
        def block(input_ids, scores):
            if banned := repeated_ngram_ends(input_ids[prompt_length:].tolist(), options.no_repeat_ngram):
                scores[list(banned)] = -float("inf")
            return scores

        processors.append(block)
    if options.dry_multiplier > 0:
        def dry(input_ids, scores):
            apply_dry(scores, input_ids.tolist(), options, breakers)
            return scores

        processors.append(dry)
    return processors or None


class LlamaCppEngine(Engine):
    """Generation through llama.cpp on the original GGUF weights."""

    name = "llamacpp"

    def __init__(self, spec: ModelSpec, llm, tokenizer):
        self.spec = spec
        self.model_name = spec.name
        self.llm = llm
        self.tokenizer = tokenizer
        self.dry_breakers = dry_breaker_ids(tokenizer)
        self.context_length = llm.n_ctx()
        self.last = Completion("", 0, 0, "stop")

    @classmethod
    def load(cls, spec: ModelSpec, adapters: list[str], threads: int | None = None,
             context_length: int = 4096, **_ignored) -> LlamaCppEngine:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ModelError("the llamacpp engine is not installed",
                             "pip install 'lorebook[fast]' (compiles llama.cpp, ~7 min), or use --engine torch") from None
        if spec.kind == "hf-dir":
            raise ModelError(f"{spec.name} is an HF directory; llama.cpp needs a GGUF file", "use --engine torch")
        lora = {}
        if adapters:  # one adapter exported by `lorebook adapters export NAME --gguf`
            from lorebook.models.loader import resolve_adapter, split_weight

            name, weight = split_weight(adapters[0])
            exported = resolve_adapter(name) / "adapter.gguf"
            if len(adapters) > 1 or not exported.exists():
                raise AdapterError("the llamacpp engine applies one adapter, exported to GGUF",
                                   f"run `lorebook adapters export {name} --gguf`, or use --engine torch")
            lora = {"lora_path": str(exported), "lora_scale": weight}
        path = gguf_path(spec)
        validate_gguf(path)
        with without_weight_repacking():
            llm = Llama(model_path=str(path), n_ctx=context_length, n_threads=threads or os.cpu_count(),
                        verbose=False, **lora)
        return cls(spec, llm, load_tokenizer(spec))

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=True))

    def render(self, messages: list[Message], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def stream_prompt(self, prompt: str, options: GenerationOptions) -> Iterator[str]:
        tokens = self.llm.tokenize(prompt.encode(), add_bos=False, special=True)
        stops = list(options.stop) + [t for t in ("<|im_end|>", "<end_of_turn>", "<|endoftext|>")
                                      if t in self.tokenizer.get_vocab()]
        pieces: list[str] = []
        finish = "length"
        count = 0
        for chunk in self.llm.create_completion(
            tokens, max_tokens=options.max_tokens, temperature=options.temperature, top_k=options.top_k,
            top_p=options.top_p, repeat_penalty=options.repetition_penalty, stop=stops, stream=True,
            seed=options.seed if options.seed is not None else -1,
            logits_processor=logits_processors(options, len(tokens), self.dry_breakers),
        ):
            choice = chunk["choices"][0]
            if choice["text"]:
                count += 1
                pieces.append(choice["text"])
                yield choice["text"]
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
        self.last = Completion("".join(pieces), len(tokens), count, finish)
