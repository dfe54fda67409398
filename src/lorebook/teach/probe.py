"""Quick recall probe: ask each fact's question greedily and check the answer (or an alias) appears.

Used for the metrics saved with an adapter, for sweeps when no evaluation suite is installed, and by
the benchmark's time-to-90%-recall measurement. Full evaluation (paraphrases, forgetting) lives in the
evaluation package; this is the cheap in-training check.
"""

from __future__ import annotations

import re

import torch

from lorebook.teach.pack import Fact


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def is_correct(reply: str, fact: Fact) -> bool:
    """True when the reply contains the answer or one of its aliases (case and punctuation ignored)."""
    said = f" {normalize(reply)} "
    return any(f" {normalize(answer)} " in said for answer in fact.accepted_answers() if normalize(answer))


@torch.no_grad()
def answer_questions(model, tokenizer, questions: list[str], max_new_tokens: int = 24,
                     batch_size: int = 16) -> list[str]:
    """Greedy replies to single-turn questions through the chat template, batched with left padding."""
    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    replies: list[str] = []
    try:
        for start in range(0, len(questions), batch_size):
            prompts = [
                tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
                for q in questions[start : start + batch_size]
            ]
            batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
            new_tokens = output[:, batch["input_ids"].shape[1]:]
            replies.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return [reply.strip() for reply in replies]


def recall(model, tokenizer, facts: list[Fact]) -> float:
    """Share of facts whose exact question is answered correctly."""
    if not facts:
        return 0.0
    replies = answer_questions(model, tokenizer, [fact.question for fact in facts])
    return sum(is_correct(reply, fact) for reply, fact in zip(replies, facts)) / len(facts)
