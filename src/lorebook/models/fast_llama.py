"""A compact Llama forward pass for fast single-stream decoding on CPU.

Why this exists: `transformers.generate` spends most of each step in Python (logits processors,
mask building, dynamic cache bookkeeping) and reads fp32 weights; on a 2-core CPU that caps
SmolLM2-135M near 12 tokens/s. Here the same weights run through a few fused matmuls per layer
(QKV in one, gate+up in one), a preallocated KV cache written in place, and optional int8 dynamic
quantization (fbgemm), which cuts the memory read per token by 4x. Batch size is 1: this is the
interactive path. Numerics match the HF implementation (RMSNorm, rotate-half RoPE, GQA attention).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def supports(model) -> bool:
    """True for plain Llama-architecture models this module can run exactly."""
    cfg = model.config
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    return (
        cfg.model_type == "llama"
        and getattr(cfg, "hidden_act", "silu") == "silu"
        and rope.get("rope_type", "default") == "default"
        and not getattr(cfg, "mlp_bias", False)
    )


def _fuse(*linears: nn.Linear) -> nn.Linear:
    """One Linear whose output is the concatenation of several (same input)."""
    weight = torch.cat([lin.weight.detach() for lin in linears], dim=0)
    has_bias = all(lin.bias is not None for lin in linears)
    fused = nn.Linear(weight.shape[1], weight.shape[0], bias=has_bias)
    fused.weight = nn.Parameter(weight.clone(), requires_grad=False)
    if has_bias:
        fused.bias = nn.Parameter(torch.cat([lin.bias.detach() for lin in linears]), requires_grad=False)
    return fused


class Block(nn.Module):
    """One decoder layer: pre-norm attention and SwiGLU MLP, weights fused for fewer calls."""

    def __init__(self, layer, n_heads: int, n_kv: int, head_dim: int, eps: float):
        super().__init__()
        attn, mlp = layer.self_attn, layer.mlp
        self.qkv = _fuse(attn.q_proj, attn.k_proj, attn.v_proj)
        self.o = attn.o_proj
        self.gate_up = _fuse(mlp.gate_proj, mlp.up_proj)
        self.down = mlp.down_proj
        self.norm1 = layer.input_layernorm.weight.detach()
        self.norm2 = layer.post_attention_layernorm.weight.detach()
        self.n_heads, self.n_kv, self.head_dim, self.eps = n_heads, n_kv, head_dim, eps
        self.split = (n_heads * head_dim, n_kv * head_dim, n_kv * head_dim)

    def forward(self, x, cos, sin, k_cache, v_cache, pos: int):
        T = x.shape[1]
        h = F.rms_norm(x, (x.shape[-1],), self.norm1, self.eps)
        q, k, v = self.qkv(h).split(self.split, dim=-1)
        q = q.view(1, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(1, T, self.n_kv, self.head_dim).transpose(1, 2)
        v = v.view(1, T, self.n_kv, self.head_dim).transpose(1, 2)
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        k_cache[:, :, pos : pos + T] = k
        v_cache[:, :, pos : pos + T] = v
        keys, values = k_cache[:, :, : pos + T], v_cache[:, :, : pos + T]
        if T == 1:
            out = F.scaled_dot_product_attention(q, keys, values, enable_gqa=True)
        elif pos == 0:
            out = F.scaled_dot_product_attention(q, keys, values, is_causal=True, enable_gqa=True)
        else:  # a new chunk after cached tokens: each new token sees the cache and its own past
            mask = torch.ones(T, pos + T, dtype=torch.bool).tril(diagonal=pos)
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=True)
        x = x + self.o(out.transpose(1, 2).reshape(1, T, -1))
        h = F.rms_norm(x, (x.shape[-1],), self.norm2, self.eps)
        gate, up = self.gate_up(h).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


def _rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class FastLlama(nn.Module):
    """Batch-1 Llama with a preallocated KV cache; `forward(ids, pos)` returns last-token logits."""

    def __init__(self, hf_model, max_len: int, quantize: str = "int8"):
        super().__init__()
        cfg = hf_model.config
        inner = hf_model.model
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.max_len = max_len
        self.embed = inner.embed_tokens
        self.blocks = nn.ModuleList(
            Block(layer, cfg.num_attention_heads, self.n_kv, self.head_dim, cfg.rms_norm_eps) for layer in inner.layers
        )
        self.norm = inner.norm.weight.detach()
        self.eps = cfg.rms_norm_eps
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.lm_head.weight = nn.Parameter(hf_model.lm_head.weight.detach().clone(), requires_grad=False)
        # RoPE tables for every position, in the HF layout (frequencies repeated for both halves).
        inv_freq = inner.rotary_emb.inv_freq.float()
        scale = float(getattr(inner.rotary_emb, "attention_scaling", 1.0))
        freqs = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos, self.sin = emb.cos() * scale, emb.sin() * scale
        shape = (len(self.blocks), 1, self.n_kv, max_len, self.head_dim)
        self.k_cache = torch.zeros(shape)
        self.v_cache = torch.zeros(shape)
        if quantize == "int8":
            # Per-channel int8 weights for every Linear (fbgemm kernels); the embedding stays fp32.
            import warnings

            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            # torch marks its quantized-tensor API deprecated in favour of torchao, but it is still the
            # fastest int8 CPU path in 2.13 and has no replacement without an extra dependency.
            warnings.filterwarnings("ignore", message=".*quantize_per_channel.*", category=UserWarning)
            warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated", category=DeprecationWarning)
            quantize_dynamic(self, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, pos: int) -> torch.Tensor:
        """Logits for the token after `ids` (shape [1, T]), which start at position `pos`."""
        T = ids.shape[1]
        if pos + T > self.max_len:
            raise ValueError(f"context of {pos + T} tokens exceeds the cache of {self.max_len}")
        x = self.embed(ids)
        cos, sin = self.cos[pos : pos + T], self.sin[pos : pos + T]
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, self.k_cache[i], self.v_cache[i], pos)
        x = F.rms_norm(x[:, -1:], (x.shape[-1],), self.norm, self.eps)
        return self.lm_head(x)[0, -1]
