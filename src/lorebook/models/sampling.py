"""Pick the next token from logits: repetition penalty, n-gram blocking, temperature, top-k, top-p.

Shared by the torch engine's decode loop. Works on one logits vector per call; the repetition
penalty uses the CTRL/HF rule (divide positive logits, multiply negative ones) so results match
`transformers.generate` with the same options.

The n-gram block (`no_repeat_ngram`) looks at the reply only. transformers' `no_repeat_ngram_size`
also counts the prompt, which in a role-play holds the system prompt and every earlier turn: it would
forbid the persona's own stock phrases ("¿Cuál es el motivo de su viaje?") while the problem it is
meant for is a small tuned model repeating one sentence until its budget runs out.
"""

from __future__ import annotations

import torch

from lorebook.models.engine import GenerationOptions


class Sampler:
    """Stateful sampler for one generation: holds the RNG and the set of seen tokens."""

    def __init__(self, options: GenerationOptions, seen: list[int]):
        self.options = options
        self.generator = torch.Generator()
        if options.seed is not None:
            self.generator.manual_seed(options.seed)
        else:
            self.generator.seed()
        self.seen = torch.tensor(sorted(set(seen)), dtype=torch.long)
        self.seen_set = set(seen)
        self.reply: list[int] = []

    def add(self, token: int) -> None:
        self.reply.append(token)
        if token not in self.seen_set:
            self.seen_set.add(token)
            self.seen = torch.cat([self.seen, torch.tensor([token])])

    @torch.inference_mode()
    def __call__(self, logits: torch.Tensor) -> int:
        opts = self.options
        logits = logits.float()
        if opts.repetition_penalty != 1.0 and len(self.seen):
            picked = logits[self.seen]
            logits[self.seen] = torch.where(picked > 0, picked / opts.repetition_penalty, picked * opts.repetition_penalty)
        if banned := repeated_ngram_ends(self.reply, opts.no_repeat_ngram):
            logits[list(banned)] = float("-inf")
        if opts.temperature <= 0:
            return int(torch.argmax(logits))
        logits = logits / opts.temperature
        if opts.top_k and opts.top_k > 0:
            k = min(opts.top_k, logits.shape[-1])
            values, indices = torch.topk(logits, k)
        else:
            values, indices = torch.sort(logits, descending=True)
        probs = torch.softmax(values, dim=-1)
        if 0 < opts.top_p < 1:
            cumulative = torch.cumsum(probs, dim=-1)
            keep = cumulative - probs < opts.top_p  # always keeps the first token
            probs = probs * keep
            probs = probs / probs.sum()
        choice = torch.multinomial(probs, 1, generator=self.generator)
        return int(indices[choice])


def repeated_ngram_ends(tokens: list[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already in `tokens` (empty when n < 2 or nothing repeats)."""
    if n < 2 or len(tokens) < n:
        return set()
    prefix = tokens[len(tokens) - n + 1 :]
    return {tokens[i + n - 1] for i in range(len(tokens) - n + 1) if tokens[i : i + n - 1] == prefix}


class ReplyNgramBlocker:
    """A transformers logits processor: `no_repeat_ngram` over the generated part of each row only."""

    def __init__(self, n: int, prompt_length: int):
        self.n, self.prompt_length = n, prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for row, ids in enumerate(input_ids[:, self.prompt_length :].tolist()):
            if banned := repeated_ngram_ends(ids, self.n):
                scores[row, list(banned)] = float("-inf")
        return scores
