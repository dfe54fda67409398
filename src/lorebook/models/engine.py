"""The `Engine` interface: chat-templated, streaming text generation over one loaded model.

Every part of lorebook that needs text from a model (chat, eval, synth, the server) talks to an
`Engine`. Two implementations: `torch` (transformers weights, own decode loop; the default and the
one training shares) and `llamacpp` (llama-cpp-python over the GGUF, optional extra `[fast]`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

from lorebook.errors import InputError

Message = dict[str, str]


@dataclass
class GenerationOptions:
    """Sampling options; each field's help drives the CLI's `-o key=value` listing."""

    temperature: float = field(default=0.7, metadata={"help": "randomness; 0 means greedy (always the likeliest token)"})
    top_k: int = field(default=40, metadata={"help": "sample only among the k likeliest tokens (0 = off)"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling: smallest token set with this total probability"})
    repetition_penalty: float = field(default=1.1, metadata={"help": "divide logits of tokens already seen (1.0 = off)"})
    no_repeat_ngram: int = field(default=0, metadata={"help": "never repeat a run of this many tokens within one reply (0 = off; the prompt is not counted)"})
    dry_multiplier: float = field(default=0.0, metadata={"help": "DRY: penalize extending a run of tokens already in the conversation (0 = off; 0.8 is usual)"})
    dry_base: float = field(default=1.75, metadata={"help": "DRY: how fast the penalty grows with the run's length"})
    dry_allowed_length: int = field(default=2, metadata={"help": "DRY: runs up to this many tokens cost nothing"})
    max_tokens: int = field(default=256, metadata={"help": "stop after this many new tokens"})
    stop: list[str] = field(default_factory=list, metadata={"help": "stop when one of these strings appears (comma-separated)"})
    seed: int | None = field(default=None, metadata={"help": "random seed for reproducible sampling"})

    def updated(self, **changes) -> GenerationOptions:
        """A copy with some fields replaced (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def help_lines(cls) -> list[str]:
        defaults = cls()
        return [f"{f.name}={getattr(defaults, f.name)!r}: {f.metadata['help']}" for f in dataclasses.fields(cls)]

    @classmethod
    def parse_pairs(cls, pairs: list[str], base: GenerationOptions | None = None) -> GenerationOptions:
        """Apply `key=value` strings (from `-o`) to options, with one-line errors for bad ones."""
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        changes: dict = {}
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in types:
                raise InputError(f"bad option {pair!r}", "use -o key=value with key one of: " + ", ".join(types))
            try:
                if key == "stop":
                    changes[key] = [s for s in raw.split(",") if s]
                elif key == "seed":
                    changes[key] = None if raw.lower() in ("", "none") else int(raw)
                elif types[key] in ("int", int):
                    changes[key] = int(raw)
                else:
                    changes[key] = float(raw)
            except ValueError:
                raise InputError(f"option {key} needs a number, got {raw!r}", f"e.g. -o {key}=1") from None
        return dataclasses.replace(base or cls(), **changes)


@dataclass
class Completion:
    """A finished generation."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn or stop string) or "length"


class Engine(ABC):
    """A loaded model that turns chat messages into streamed text."""

    name: str = "engine"
    model_name: str = ""
    context_length: int = 2048

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Number of tokens in `text` under this model's tokenizer."""

    @abstractmethod
    def render(self, messages: list[Message], add_generation_prompt: bool = True) -> str:
        """The prompt text for `messages` under the model's chat template."""

    @abstractmethod
    def stream_prompt(self, prompt: str, options: GenerationOptions) -> Iterator[str]:
        """Text pieces generated after a raw prompt; stops at end of turn, stop strings or max_tokens.

        After the iterator is exhausted `self.last` holds the Completion (token counts, finish reason).
        """

    def stream(self, messages: list[Message], options: GenerationOptions | None = None) -> Iterator[str]:
        """Stream the assistant's reply to chat messages."""
        return self.stream_prompt(self.render(messages), options or GenerationOptions())

    def chat(self, messages: list[Message], options: GenerationOptions | None = None) -> Completion:
        """The whole assistant reply to chat messages."""
        return self.complete(self.render(messages), options)

    def complete(self, prompt: str, options: GenerationOptions | None = None) -> Completion:
        """The whole continuation of a raw prompt."""
        text = "".join(self.stream_prompt(prompt, options or GenerationOptions()))
        last = self.last
        return Completion(text, last.prompt_tokens, last.completion_tokens, last.finish_reason)

    def chat_batch(self, conversations: list[list[Message]], options: GenerationOptions | None = None) -> list[str]:
        """Replies to many conversations; engines that can batch override this for throughput. Sampled replies
        get seeds seed, seed+1, … as rows of a real batch sample independently: the same conversation twice in
        one batch (a persona's candidate replies) gives two samples."""
        options = options or GenerationOptions()
        return [self.chat(messages, row_options(options, index)).text for index, messages in enumerate(conversations)]

    last: Completion = Completion("", 0, 0, "stop")


def row_options(options: GenerationOptions, index: int) -> GenerationOptions:
    """The options for row `index` of a batch answered one conversation at a time: a sampled, seeded row gets
    seed + index, as rows of a real batch sample independently."""
    if options.temperature > 0 and options.seed is not None:
        return options.updated(seed=options.seed + index)
    return options


def last_user_text(messages: list[Message]) -> str:
    """The content of the last user turn ("" when there is none): what scope checks judge a request by."""
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """Text up to the first stop string, and whether one was found."""
    cut = len(text)
    for stop in stops:
        index = text.find(stop)
        if index != -1:
            cut = min(cut, index)
    return text[:cut], cut < len(text)


def held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters might be the start of a stop string (not yet safe to emit)."""
    keep = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:size]):
                keep = max(keep, size)
                break
    return keep


ENGINES = ("torch", "llamacpp")


def load_engine(
    model: str | None = None,
    adapters: list[str] | None = None,
    engine: str = "torch",
    **kwargs,
) -> Engine:
    """Load a model by name or path into the chosen engine, with LoRA adapters attached."""
    from lorebook.models.registry import resolve_model

    spec = resolve_model(model)
    if engine == "torch":
        from lorebook.models.torch_engine import TorchEngine

        return TorchEngine.load(spec, adapters or [], **kwargs)
    if engine == "llamacpp":
        from lorebook.models.llamacpp_engine import LlamaCppEngine

        return LlamaCppEngine.load(spec, adapters or [], **kwargs)
    raise InputError(f"unknown engine {engine!r}", "use --engine torch or --engine llamacpp")
