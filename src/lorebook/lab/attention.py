"""Causal self-attention, three ways: `dot`, `metric` (q·M·k) and `metric-shared` (p·L·Lᵀ·p).

Shapes are in the names: b batch, t time, c channels (n_embd), h heads, d head size (c / h).

- `DotAttention` is standard multi-head attention: softmax(q·kᵀ/√d)·v with separate Q, K, V projections.
- `MetricAttention` keeps Q, K, V but scores with a learned per-head metric: softmax(q·M·kᵀ/√d)·v. M starts
  as the identity, so at initialisation it *is* dot attention. `full` learns all d² entries, `symmetric`
  learns M = (A + Aᵀ)/2, `lowrank` learns M = I + U·Wᵀ of rank r (U starts at zero).
- `MetricSharedAttention` is the "metric tensor network": one shared projection p = x·P replaces Q, K and V;
  per head a positive semi-definite metric M = L·Lᵀ (L lower-triangular, starts as the identity) scores
  pairs with p·M·pᵀ/√d; the values are p itself, and an output mixer follows. Because M = L·Lᵀ we never form
  M: z = p·L once per head, then scores = z·zᵀ, so queries and keys are the same tensor and the d×d metric
  costs one t×d×d product instead of a key projection (t×c×c). Only the d(d+1)/2 lower-triangular entries
  are parameters. Attention parameters: 2c² + h·d(d+1)/2, about half of dot's 4c².

All three hand q, k, v to `scaled_dot_product_attention`, which picks a fused kernel on CUDA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DotAttention(nn.Module):
    """Standard multi-head causal self-attention."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0):
        super().__init__()
        self.n_head = n_head
        self.dropout = dropout
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=False)
        self.proj = nn.Linear(n_embd, n_embd, bias=False)
        self.proj_dropout = nn.Dropout(dropout)

    def split_heads(self, x_btc: torch.Tensor) -> torch.Tensor:
        b, t, c = x_btc.shape
        return x_btc.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)

    def queries(self, q_bhtd: torch.Tensor) -> torch.Tensor:
        """Hook for subclasses: what multiplies the keys (dot attention: q itself)."""
        return q_bhtd

    def forward(self, x_btc: torch.Tensor) -> torch.Tensor:
        b, t, c = x_btc.shape
        q_btc, k_btc, v_btc = self.qkv(x_btc).split(c, dim=2)
        q_bhtd = self.queries(self.split_heads(q_btc))
        y_bhtd = F.scaled_dot_product_attention(
            q_bhtd,
            self.split_heads(k_btc),
            self.split_heads(v_btc),
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=True,
        )
        y_btc = y_bhtd.transpose(1, 2).reshape(b, t, c)
        return self.proj_dropout(self.proj(y_btc))


class MetricAttention(DotAttention):
    """Scores q·M·kᵀ/√d with a learned per-head d×d metric M (initialised to the identity)."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, form: str = "full", rank: int = 8):
        super().__init__(n_embd, n_head, dropout)
        d = n_embd // n_head
        self.form = form
        eye_hdd = torch.eye(d).expand(n_head, d, d).clone()
        if form in ("full", "symmetric"):
            self.metric_hdd = nn.Parameter(eye_hdd)
        elif form == "lowrank":
            self.register_buffer("eye_hdd", eye_hdd, persistent=False)
            # M = I + U·Wᵀ; U = 0 makes M = I at the start while W still receives gradient through U.
            self.metric_u_hdr = nn.Parameter(torch.zeros(n_head, d, rank))
            self.metric_w_hdr = nn.Parameter(torch.randn(n_head, d, rank) / d**0.5)
        else:
            raise ValueError(f"unknown metric form {form!r}")

    def metric(self) -> torch.Tensor:
        """The per-head metric M, shape (h, d, d)."""
        if self.form == "full":
            return self.metric_hdd
        if self.form == "symmetric":
            return 0.5 * (self.metric_hdd + self.metric_hdd.transpose(1, 2))
        return self.eye_hdd + self.metric_u_hdr @ self.metric_w_hdr.transpose(1, 2)

    def queries(self, q_bhtd: torch.Tensor) -> torch.Tensor:
        # q·M·kᵀ = (q·M)·kᵀ: transform the queries once and let the fused kernel do the rest.
        return q_bhtd @ self.metric().to(q_bhtd.dtype)


class MetricSharedAttention(nn.Module):
    """One shared projection p; scores p·L·Lᵀ·pᵀ/√d (PSD metric); values p; then an output mixer."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0):
        super().__init__()
        d = n_embd // n_head
        self.n_head = n_head
        self.dropout = dropout
        self.shared = nn.Linear(n_embd, n_embd, bias=False)
        self.mixer = nn.Linear(n_embd, n_embd, bias=False)
        self.mixer_dropout = nn.Dropout(dropout)
        rows, cols = torch.tril_indices(d, d)
        self.register_buffer("tril_rows", rows, persistent=False)
        self.register_buffer("tril_cols", cols, persistent=False)
        # Only the d(d+1)/2 lower-triangular entries are stored; the identity start gives M = I.
        self.tril_hn = nn.Parameter((rows == cols).float().expand(n_head, -1).clone())

    def factor(self) -> torch.Tensor:
        """The lower-triangular L of each head, shape (h, d, d); the metric is M = L·Lᵀ."""
        h, d = self.n_head, self.shared.in_features // self.n_head
        l_hdd = self.tril_hn.new_zeros(h, d, d)
        l_hdd[:, self.tril_rows, self.tril_cols] = self.tril_hn
        return l_hdd

    def metric(self) -> torch.Tensor:
        l_hdd = self.factor()
        return l_hdd @ l_hdd.transpose(1, 2)

    def forward(self, x_btc: torch.Tensor) -> torch.Tensor:
        b, t, c = x_btc.shape
        p_bhtd = self.shared(x_btc).view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        # p·M·pᵀ = (p·L)·(p·L)ᵀ: one product gives both "queries" and "keys".
        z_bhtd = p_bhtd @ self.factor().to(p_bhtd.dtype)
        y_bhtd = F.scaled_dot_product_attention(
            z_bhtd, z_bhtd, p_bhtd, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        y_btc = y_bhtd.transpose(1, 2).reshape(b, t, c)
        return self.mixer_dropout(self.mixer(y_btc))


def make_attention(kind: str, n_embd: int, n_head: int, dropout: float, form: str, rank: int) -> nn.Module:
    """The attention module named by the config's `attention` field."""
    if kind == "dot":
        return DotAttention(n_embd, n_head, dropout)
    if kind == "metric":
        return MetricAttention(n_embd, n_head, dropout, form, rank)
    if kind == "metric-shared":
        return MetricSharedAttention(n_embd, n_head, dropout)
    raise ValueError(f"unknown attention {kind!r}")
