"""Pick the next token from logits: repetition penalty, n-gram blocking, DRY, temperature, top-k, top-p.

Shared by the torch engine's decode loop. Works on one logits vector per call; the repetition
penalty uses the CTRL/HF rule (divide positive logits, multiply negative ones) so results match
`transformers.generate` with the same options, except that end-of-turn tokens are never penalized
(`RepetitionPenalty` does the same inside batched `generate`).

The n-gram block (`no_repeat_ngram`) looks at the reply only. transformers' `no_repeat_ngram_size`
also counts the prompt, which in a role-play holds the system prompt and every earlier turn: it would
forbid the persona's own stock phrases ("¿Cuál es el motivo de su viaje?") while the problem it is
meant for is a small tuned model repeating one sentence until its budget runs out.

DRY ("don't repeat yourself", the role-play sampler of text-generation-webui and llama.cpp) covers
what the n-gram block leaves: saying again, turns later, what was said before, or echoing the other
side's line. It looks at the whole context, so it needs no turn bookkeeping, but its penalty grows
with the length of the run a token would extend (multiplier * base ** (length - allowed_length)), so
two- or three-token stock phrases cost little while a sentence copied whole becomes very unlikely.
Runs stop at breakers (newline, colon, quotes, special tokens such as turn markers).
"""

from __future__ import annotations

import torch

from lorebook.models.engine import GenerationOptions


class Sampler:
    """Stateful sampler for one generation: holds the RNG and the set of seen tokens."""

    def __init__(self, options: GenerationOptions, seen: list[int], breakers: frozenset[int] = frozenset(),
                 exempt: frozenset[int] = frozenset()):
        self.options = options
        self.context = list(seen)
        self.breakers = breakers
        # `exempt` are never penalized as repeats: the end-of-turn tokens every earlier turn ends with
        penalized = options.repetition_penalty != 1.0
        self.penalty = RepetitionPenalty(options.repetition_penalty, exempt) if penalized else None
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
        self.context.append(token)
        if token not in self.seen_set:
            self.seen_set.add(token)
            self.seen = torch.cat([self.seen, torch.tensor([token])])

    @torch.inference_mode()
    def __call__(self, logits: torch.Tensor) -> int:
        opts = self.options
        logits = logits.float()
        if self.penalty and len(self.seen):
            logits = self.penalty(self.seen[None], logits[None])[0]
        if banned := repeated_ngram_ends(self.reply, opts.no_repeat_ngram):
            logits[list(banned)] = float("-inf")
        if opts.dry_multiplier > 0:
            apply_dry(logits, self.context, opts, self.breakers)
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


class RepetitionPenalty:
    """A transformers logits processor: the CTRL/HF repetition penalty, except on `exempt` tokens.

    transformers' own penalty also hits the end-of-turn marker, which every earlier turn of a chat
    ends with. A model whose marker logit is nearly tied with untrained tokens (a base model LoRA-taught
    to chat: Gemma 3 270M puts <end_of_turn> at 20.41 and <unused816> at 20.22) then never stops and
    runs on through stray tokens ("…declarar?<unused816>\nEl pasaporte…")."""

    def __init__(self, penalty: float, exempt: frozenset[int]):
        self.penalty, self.exempt = penalty, sorted(exempt)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        kept = scores[:, self.exempt].clone()
        picked = torch.gather(scores, 1, input_ids)
        picked = torch.where(picked < 0, picked * self.penalty, picked / self.penalty)
        scores = scores.scatter(1, input_ids, picked)
        scores[:, self.exempt] = kept
        return scores


def repeated_ngram_ends(tokens: list[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already in `tokens` (empty when n < 2 or nothing repeats)."""
    if n < 2 or len(tokens) < n:
        return set()
    prefix = tokens[len(tokens) - n + 1 :]
    return {tokens[i + n - 1] for i in range(len(tokens) - n + 1) if tokens[i : i + n - 1] == prefix}


DRY_BREAKERS = ("\n", ":", '"', "*")
DRY_LONGEST = 64  # runs are measured up to this many tokens: the penalty is already huge there


def dry_breaker_ids(tokenizer) -> frozenset[int]:
    """Token ids that end a DRY run: the breakers when they are one token, and every special token."""
    ids = set(tokenizer.all_special_ids)
    ids.update(getattr(tokenizer, "added_tokens_decoder", {}))
    for text in DRY_BREAKERS + ("\n\n",):
        encoded = tokenizer.encode(text, add_special_tokens=False)
        if len(encoded) == 1:
            ids.add(encoded[0])
    return frozenset(ids)


def dry_penalties(tokens: list[int], options: GenerationOptions, breakers: frozenset[int] = frozenset()) -> dict[int, float]:
    """Logit penalty per token that would extend a run of `tokens` already seen earlier in `tokens`.

    For every earlier place where the last token occurred, the matching run is walked backwards
    (stopping at a breaker); the token that followed it there is what would repeat the run now."""
    if options.dry_multiplier <= 0 or len(tokens) < 2 or tokens[-1] in breakers:
        return {}
    last = len(tokens) - 1
    longest: dict[int, int] = {}
    for end in range(last):
        if tokens[end] != tokens[last] or tokens[end + 1] in breakers:
            continue
        length = 1
        while (length <= end and length < DRY_LONGEST and tokens[end - length] == tokens[last - length]
               and tokens[end - length] not in breakers):
            length += 1
        follower = tokens[end + 1]
        longest[follower] = max(longest.get(follower, 0), length)
    return {token: options.dry_multiplier * options.dry_base ** (length - options.dry_allowed_length)
            for token, length in longest.items() if length >= options.dry_allowed_length}


def apply_dry(logits, tokens: list[int], options: GenerationOptions, breakers: frozenset[int]) -> None:
    """Subtract the DRY penalties from one logits vector in place (a torch tensor, or the numpy array that
    llama-cpp-python hands its logits processors); only the few tokens that would extend a run change."""
    for token, penalty in dry_penalties(tokens, options, breakers).items():
        logits[token] -= penalty


class DryPenalty:
    """A transformers logits processor: DRY over each row's whole context (left padding skipped)."""

    def __init__(self, options: GenerationOptions, breakers: frozenset[int], pad_id: int | None):
        self.options, self.breakers, self.pad_id = options, breakers, pad_id

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for row, ids in enumerate(input_ids.tolist()):
            start = 0
            while start < len(ids) and ids[start] == self.pad_id:
                start += 1
            apply_dry(scores[row], ids[start:], self.options, self.breakers)
        return scores


class ReplyNgramBlocker:
    """A transformers logits processor: `no_repeat_ngram` over the generated part of each row only."""

    def __init__(self, n: int, prompt_length: int):
        self.n, self.prompt_length = n, prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for row, ids in enumerate(input_ids[:, self.prompt_length :].tolist()):
            if banned := repeated_ngram_ends(ids, self.n):
                scores[row, list(banned)] = float("-inf")
        return scores
