"""Tokenize examples with loss masks and group them into padded batches by length.

Labels are -100 (ignored by the loss) on prompt tokens and padding, so the model learns answers and
statements, not to reproduce the chat template or the question. Batches are built from length-sorted
pools ("mega-batches", as in fairseq): examples of similar length share a batch, so little compute is
spent on padding, while the pool order is still reshuffled every epoch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from lorebook.teach.render import Example

IGNORE_INDEX = -100


@dataclass
class Encoded:
    """One tokenized example."""

    input_ids: list[int]
    labels: list[int]
    cut: bool = False  # longer than the cutoff: the tail (later chat turns) was not trained on

    @property
    def trainable_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def encode(example: Example, tokenizer, cutoff_len: int) -> Encoded | None:
    """Token ids and labels for an example, cut to `cutoff_len`; None if nothing trainable is left."""
    input_ids: list[int] = []
    labels: list[int] = []
    for text, trainable in example.segments:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        input_ids.extend(ids)
        labels.extend(ids if trainable else [IGNORE_INDEX] * len(ids))
    # Same BOS rule as the torch engine's prompts, so training and inference see identical token streams.
    bos = tokenizer.bos_token_id
    if bos is not None and getattr(tokenizer, "add_bos_token", False) and input_ids and input_ids[0] != bos:
        input_ids, labels = [bos] + input_ids, [IGNORE_INDEX] + labels
    cut = len(input_ids) > cutoff_len
    input_ids, labels = input_ids[:cutoff_len], labels[:cutoff_len]
    # The first token is never predicted (nothing precedes it), so it cannot carry the loss alone.
    if not any(label != IGNORE_INDEX for label in labels[1:]):
        return None
    return Encoded(input_ids, labels, cut)


def encode_all(examples: list[Example], tokenizer, cutoff_len: int) -> tuple[list[Encoded], int]:
    """Encoded examples and the number dropped because the cutoff left nothing to learn."""
    encoded = [encode(example, tokenizer, cutoff_len) for example in examples]
    kept = [item for item in encoded if item is not None]
    return kept, len(encoded) - len(kept)


def plan_batches(lengths: list[int], batch_size: int, seed: int, epoch: int, pool_batches: int = 16) -> list[list[int]]:
    """Index lists, one per batch, for one epoch: shuffle, sort within pools by length, shuffle batches.

    Deterministic for (seed, epoch), so a resumed run replays exactly the batches it would have seen.
    """
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * pool_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda index: lengths[index])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def collate(items: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids, attention_mask and labels tensors for one batch."""
    width = max(len(item.input_ids) for item in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        size = len(item.input_ids)
        input_ids[row, :size] = torch.tensor(item.input_ids)
        labels[row, :size] = torch.tensor(item.labels)
        attention[row, :size] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
