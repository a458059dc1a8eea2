"""Scaled dot-product attention and multi-head self-attention (the "softmax" algorithm).

attention(Q, K, V) = softmax(Q K^T / sqrt(D) + mask) V, computed by two kernels (cfg.kernel)
that give the same numbers: torch's fused `scaled_dot_product_attention` ("sdpa", the default,
fast) and the explicit math path ("math": scores -> mask -> softmax -> weights @ V), which also
returns the weights for inspection. Hooking a layer's `hook_attn_scores` or `hook_pattern`
(model/hooks.py) makes it take the math path, the only one that forms them. While decoding,
each layer keeps every past key and value in a LayerCache (below), so that a new token costs
one position.

Grouped-query attention: H query heads share Hkv key/value heads, query head h reading kv head
h // (H / Hkv). Hkv = H is ordinary multi-head attention, Hkv = 1 multi-query attention.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from glassformer.model.hooks import HookPoint
from glassformer.model.masks import combine
from glassformer.model.norm import make_norm
from glassformer.model.position import rotary, score_bias


def attend_math(q, k, v, mask=None, dropout_p: float = 0.0, scale: float | None = None,
                hook_scores=None, hook_pattern=None):
    """q (B, H, T, D), k and v (B, Hkv, S, D); mask broadcastable to (B, H, T, S): bool (True =
    may attend), or float added to the scores (-inf = may not), or None; scale multiplies the
    scores (default 1/sqrt(D)). The masked scores and the weights flow through the hook points
    `hook_scores` and `hook_pattern` when given (a layer passes its own).

    Returns the output (B, H, T, D) and the attention weights (B, H, T, S).
    """
    groups = q.size(1) // k.size(1)
    k = k.repeat_interleave(groups, dim=1)  # (B, H, S, D): kv head j serves query heads of group j
    v = v.repeat_interleave(groups, dim=1)  # (B, H, S, D)
    scale = 1 / math.sqrt(q.size(-1)) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale  # (B, H, T, S)
    if mask is not None and mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    elif mask is not None:
        scores = scores + mask  # a score bias such as ALiBi's, with -inf where masked
    if hook_scores is not None:
        scores = hook_scores(scores)  # (B, H, T, S)
    weights = torch.softmax(scores, dim=-1)  # rows sum to 1; masked keys get exactly 0
    if hook_pattern is not None:
        weights = hook_pattern(weights)
    dropped = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    return dropped @ v, weights  # (B, H, T, D), (B, H, T, S)


class Projections(nn.Module):
    """What every attention layer shares: one fused q,k,v projection into H query heads and Hkv
    key/value heads of width D, optional QK-norm, the rotation of q and k when the position
    scheme is one (RoPE), and the output projection W_O; the hook points of q, k, v (where each
    layer's forward sends them) and of z, each head's output before W_O."""

    def __init__(self, cfg):
        super().__init__()
        self.n_head, self.kv_heads, self.head_dim = cfg.n_head, cfg.kv_heads, cfg.head_dim
        kv_width = self.kv_heads * self.head_dim
        self.qkv = nn.Linear(cfg.n_embd, cfg.n_embd + 2 * kv_width, bias=cfg.bias)  # [W_Q; W_K; W_V]
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)  # W_O
        self.q_norm = make_norm(cfg, cfg.head_dim) if cfg.qk_norm else None  # over each head's D
        self.k_norm = make_norm(cfg, cfg.head_dim) if cfg.qk_norm else None
        self.rotary = rotary(cfg)  # RoPE's Rotary, or None when positions act elsewhere
        self.scale = cfg.qk_scale  # None: 1/sqrt(D)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_z = HookPoint()  # (B, H, T, D)

    def split_heads(self, x):
        """x (B, T, C) -> q (B, H, T, D), k and v (B, Hkv, T, D), QK-normed if configured."""
        B, T, C = x.shape
        H, Hkv, D = self.n_head, self.kv_heads, self.head_dim
        q, k, v = self.qkv(x).split([C, Hkv * D, Hkv * D], dim=2)  # (B, T, C), 2 x (B, T, Hkv*D)
        q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, Hkv, D).transpose(1, 2)  # (B, Hkv, T, D)
        v = v.view(B, T, Hkv, D).transpose(1, 2)  # (B, Hkv, T, D)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)  # QK-norm (OLMo 2, Qwen3): before the rotation
        return q, k, v

    def rotate(self, q, k, positions, cache):
        """The rotation on q and k (unchanged without one); positions default to the T after
        the cache."""
        if self.rotary is None:
            return q, k
        if positions is None:
            start = cache.length if cache is not None else 0
            positions = torch.arange(start, start + q.size(2), device=q.device)  # (T,)
        return self.rotary(q, k, positions)

    def merge_heads(self, y):
        """y (B, H, T, D) -> heads side by side (B, T, C) -> W_O."""
        y = self.hook_z(y)
        B, H, T, D = y.shape
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, H * D))


class SelfAttention(Projections):
    """Softmax multi-head self-attention (grouped-query when Hkv < H), with an optional score bias
    by relative position (ALiBi's, or T5's: bidirectional when not causal) and a sliding window.

    `kernel` ("sdpa" or "math") picks how it is computed; the math kernel sends the (B, H, T, S)
    scores and weights through the hook points `hook_attn_scores` and `hook_pattern`, and a
    layer whose hook points are hooked takes it whatever the kernel.
    """

    def __init__(self, cfg, causal: bool = True):
        super().__init__(cfg)
        # ALiBi or T5's RelativeBias, or None; named `relative` as T5 checkpoints store its table
        self.relative = score_bias(cfg, causal)
        self.causal = causal
        self.window = cfg.window
        self.kernel = cfg.kernel
        self.dropout = cfg.dropout
        self.hook_attn_scores, self.hook_pattern = HookPoint(), HookPoint()

    def forward(self, x, pad=None, cache=None, positions=None):
        """x (B, T, C); pad (B, 1, 1, S) True for real keys, or None; cache a LayerCache or None;
        positions (T,) or (B, T) for RoPE, by default the T positions after the cached ones."""
        q, k, v = self.split_heads(x)  # (B, H, T, D), (B, Hkv, T, D) x 2
        q, k = self.rotate(q, k, positions, cache)  # keys are cached already rotated
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)  # the new positions only
        if cache is not None:
            k, v = cache.append(k, v)  # (B, Hkv, S, D), S = cached + T
        return self.merge_heads(self._attend(q, k, v, pad))  # (B, H, T, D) -> (B, T, C)

    def _attend(self, q, k, v, pad):
        T, S = q.size(2), k.size(2)
        p = self.dropout if self.training else 0.0
        gqa = self.kv_heads != self.n_head
        plain = pad is None and self.relative is None and self.window is None
        fused = self.kernel == "sdpa" and not (self.hook_attn_scores.active
                                               or self.hook_pattern.active)
        if fused and plain and (T == S or T == 1):
            # The common cases need no mask tensor: training (causal, T == S) and
            # one-token decoding (the new token sees every cached key).
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p, enable_gqa=gqa,
                                                  is_causal=self.causal and T == S and T > 1,
                                                  scale=self.scale)
        mask = combine(T, S, self.causal, pad, q.device, self.window)  # bool or None
        if self.relative is not None:
            bias = self.relative(T, S).to(q.dtype)  # (H, T, S)
            mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
        if fused:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
                                                  enable_gqa=gqa, scale=self.scale)
        return attend_math(q, k, v, mask, p, self.scale, self.hook_attn_scores,
                           self.hook_pattern)[0]


class LayerCache:
    """What one softmax attention layer keeps while decoding, its keys and values: (B, Hkv,
    capacity, D) buffers written by position, filled up to `length`. The capacity grows as
    positions come (doubling, at least GROW at a time, up to max_len, the model's window), so a
    short reply of a model with a long window does not allocate the whole window."""

    GROW = 256

    def __init__(self, batch: int, kv_heads: int, max_len: int, head_dim: int, device, dtype):
        self.max_len = max_len
        self.k = torch.empty(batch, kv_heads, 0, head_dim, device=device, dtype=dtype)
        self.v = torch.empty_like(self.k)
        self.length = 0
        self.memory_kv = None  # cross-attention: the encoder output's (k, v), computed once

    @classmethod
    def for_config(cls, cfg, batch: int, device, dtype):
        """Up to `cfg.block_size` positions of the Hkv key/value heads (grouped-query attention
        shrinks the cache by H / Hkv)."""
        return cls(batch, cfg.kv_heads, cfg.block_size, cfg.head_dim, device, dtype)

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep batch rows `rows` (B',) in that order (beam search follows its beams' parents)."""
        self.k, self.v = self.k[rows], self.v[rows]
        if self.memory_kv is not None:
            self.memory_kv = tuple(t[rows] for t in self.memory_kv)

    def truncate(self, length: int) -> None:
        """Forget every position from `length` on (speculative decoding's rejected drafts);
        the buffers are written over as positions come again."""
        self.length = min(self.length, length)

    def append(self, k: torch.Tensor, v: torch.Tensor):
        """Store the new (B, Hkv, T, D) keys/values; return all so far, (B, Hkv, S, D) each."""
        start, end = self.length, self.length + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; {end} were asked for")
        if end > self.k.size(2):
            self._grow(min(self.max_len, max(end, 2 * self.k.size(2), self.GROW)))
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def _grow(self, capacity: int) -> None:
        """New (B, Hkv, capacity, D) buffers holding the cached positions."""
        B, Hkv, _, D = self.k.shape
        k = self.k.new_empty(B, Hkv, capacity, D)
        v = self.v.new_empty(B, Hkv, capacity, D)
        k[:, :, :self.length] = self.k[:, :, :self.length]
        v[:, :, :self.length] = self.v[:, :, :self.length]
        self.k, self.v = k, v
