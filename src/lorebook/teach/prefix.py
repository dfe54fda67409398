"""Frozen-prefix cache: train LoRA in the top decoder layers and run the layers below once, not every epoch.

Why: on a 2-core CPU a training step is a forward and a backward pass through every decoder layer
(30 in SmolLM2-135M). With LoRA in the top N layers only, the layers below hold no trainable weight,
so the hidden states they hand upward for an example are the same in every epoch. We compute them
once (forward only, no autograd graph), keep each example's states (576 floats a token for SmolLM2:
about 40 MB for the Oscars pack's 17k tokens), and each epoch feeds them to the top layers as
`inputs_embeds`. The backward pass stops at the first trained layer as well.

The decoder is cut by swapping its `layers` list (and final norm) for the duration of one forward
call, which works for every Hugging Face decoder that loops over `self.layers` (Llama, Qwen, Gemma 3).
Because that is a reading of someone else's forward(), the trainer checks it on the first batch: the
loss through the cache must equal the loss through the whole model, or the cache is not used.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from tqdm.auto import tqdm

from lorebook.teach.data import Encoded, collate


def decoder_parts(model) -> tuple[torch.nn.Module | None, torch.nn.Module | None]:
    """(decoder backbone, LM head) of a causal LM, through a PEFT wrapper; (None, None) if unusual."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(inner, "model", None), getattr(inner, "lm_head", None)


def layer_count(model) -> int:
    """Decoder layers of the model (0 when it has no `model.layers` list)."""
    backbone, _ = decoder_parts(model)
    layers = getattr(backbone, "layers", None)
    return len(layers) if isinstance(layers, torch.nn.ModuleList) else 0


@contextmanager
def only_layers(backbone: torch.nn.Module, start: int, stop: int | None = None,
                final_norm: bool = True) -> Iterator[None]:
    """Make the backbone run layers[start:stop] only (and skip its final norm) inside the block."""
    layers, norm = backbone.layers, backbone.norm
    backbone.layers = torch.nn.ModuleList(list(layers)[start:stop])
    if not final_norm:
        backbone.norm = torch.nn.Identity()
    try:
        yield
    finally:
        backbone.layers, backbone.norm = layers, norm


class PrefixCache:
    """Each example's hidden states entering decoder layer `first_trained`, computed once."""

    def __init__(self, model, encoded: list[Encoded], first_trained: int, pad_id: int,
                 batch_size: int = 16, progress: bool = False):
        self.first_trained = first_trained
        backbone, _ = decoder_parts(model)
        self.states: list[torch.Tensor] = [torch.empty(0)] * len(encoded)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))  # little padding
        bar = tqdm(total=len(order), desc=f"frozen layers 0-{first_trained - 1}", unit="example",
                   disable=not progress, dynamic_ncols=True, leave=False)
        # no_grad, not inference_mode: the top layers save these tensors for their backward pass.
        with torch.no_grad(), only_layers(backbone, 0, first_trained, final_norm=False):
            for start in range(0, len(order), batch_size):
                chosen = order[start : start + batch_size]
                batch = collate([encoded[i] for i in chosen], pad_id)
                hidden = backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  use_cache=False).last_hidden_state
                for row, i in enumerate(chosen):
                    self.states[i] = hidden[row, : len(encoded[i].input_ids)].clone()
                bar.update(len(chosen))
        bar.close()

    def batch(self, indices: list[int]) -> torch.Tensor:
        """Right-padded [batch, tokens, hidden] states for these examples (padding is masked anyway)."""
        chosen = [self.states[i] for i in indices]
        out = chosen[0].new_zeros((len(chosen), max(len(s) for s in chosen), chosen[0].shape[-1]))
        for row, states in enumerate(chosen):
            out[row, : len(states)] = states
        return out
