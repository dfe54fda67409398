"""Pick the next token from logits: repetition penalty, temperature, top-k, top-p.

Shared by the torch engine's decode loop. Works on one logits vector per call; the repetition
penalty uses the CTRL/HF rule (divide positive logits, multiply negative ones) so results match
`transformers.generate` with the same options.
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

    def add(self, token: int) -> None:
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
