"""A small GPT: token + position embeddings, pre-norm blocks (attention, MLP), tied output head.

Shapes are in the names (b batch, t time, c channels, v vocabulary). The attention module is chosen by
`LabConfig.attention` (see attention.py); everything else is the same for every variant, so differences in
loss come from the attention alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lorebook.lab.attention import make_attention
from lorebook.lab.config import LabConfig


class MLP(nn.Module):
    """Position-wise feed-forward: c -> 4c -> c with GELU."""

    def __init__(self, n_embd: int, dropout: float):
        super().__init__()
        self.up = nn.Linear(n_embd, 4 * n_embd, bias=False)
        self.down = nn.Linear(4 * n_embd, n_embd, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x_btc: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.gelu(self.up(x_btc))))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: LabConfig):
        super().__init__()
        self.ln_attn = nn.LayerNorm(config.n_embd)
        self.attn = make_attention(
            config.attention,
            config.n_embd,
            config.n_head,
            config.dropout,
            config.metric_form,
            config.metric_rank,
        )
        self.ln_mlp = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config.n_embd, config.dropout)

    def forward(self, x_btc: torch.Tensor) -> torch.Tensor:
        x_btc = x_btc + self.attn(self.ln_attn(x_btc))
        return x_btc + self.mlp(self.ln_mlp(x_btc))


class GPT(nn.Module):
    """Decoder-only transformer whose output head shares the token embedding matrix."""

    def __init__(self, config: LabConfig, vocab_size: int):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.tok_emb = nn.Embedding(vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_final = nn.LayerNorm(config.n_embd)
        self.apply(self._init_weights)
        # GPT-2 trick: residual output projections start smaller so the residual stream's variance stays
        # about the same however deep the model is.
        for name, param in self.named_parameters():
            if name.endswith(("proj.weight", "mixer.weight", "down.weight")):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx_bt: torch.Tensor, targets_bt: torch.Tensor | None = None):
        """Logits (b, t, v) and, with targets, the mean cross-entropy over targets that are not -1."""
        t = idx_bt.shape[1]
        if t > self.config.block_size:
            raise ValueError(f"sequence of {t} tokens is longer than block_size {self.config.block_size}")
        pos_t = torch.arange(t, device=idx_bt.device)
        x_btc = self.drop(self.tok_emb(idx_bt) + self.pos_emb(pos_t))
        for block in self.blocks:
            x_btc = block(x_btc)
        # Tied head: the same matrix maps tokens to vectors and vectors back to token scores.
        logits_btv = self.ln_final(x_btc) @ self.tok_emb.weight.T
        if targets_bt is None:
            return logits_btv, None
        loss = F.cross_entropy(
            logits_btv.float().reshape(-1, self.vocab_size), targets_bt.reshape(-1), ignore_index=-1
        )
        return logits_btv, loss

    @torch.no_grad()
    def generate(
        self,
        idx_bt: torch.Tensor,
        new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Append `new_tokens` tokens; temperature 0 means greedy."""
        for _ in range(new_tokens):
            context_bt = idx_bt[:, -self.config.block_size :]
            logits_bv = self(context_bt)[0][:, -1, :].float()
            if temperature <= 0:
                next_b1 = logits_bv.argmax(dim=-1, keepdim=True)
            else:
                logits_bv = logits_bv / temperature
                if top_k:
                    kth_b1 = torch.topk(logits_bv, min(top_k, logits_bv.size(-1))).values[:, -1:]
                    logits_bv = logits_bv.masked_fill(logits_bv < kth_b1, float("-inf"))
                probs_bv = F.softmax(logits_bv, dim=-1)
                next_b1 = torch.multinomial(probs_bv, 1, generator=generator)
            idx_bt = torch.cat([idx_bt, next_b1], dim=1)
        return idx_bt


def parameter_counts(model: GPT) -> dict[str, int]:
    """Total, attention-only and non-embedding parameter counts (the tied head is counted once)."""
    total = sum(p.numel() for p in model.parameters())
    attention = sum(p.numel() for block in model.blocks for p in block.attn.parameters())
    embedding = model.tok_emb.weight.numel() + model.pos_emb.weight.numel()
    return {"total": total, "attention": attention, "non_embedding": total - embedding}


def optimizer_groups(model: GPT, weight_decay: float) -> list[dict]:
    """Decay the weight matrices only; norms and the learned metrics are left alone (decay would pull a
    metric towards zero instead of towards its identity start)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        is_matrix = name.endswith(".weight") and param.dim() == 2 and "ln_" not in name
        (decay if is_matrix else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
