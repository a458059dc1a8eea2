"""Cross-attention: the decoder's queries attend the encoder's output (the "memory").

Queries come from the decoder stream x (B, T, C); keys and values from the memory (B, S, C),
with no causal mask (every target position may read the whole source), only the source's
padding mask. The fused projection [W_Q; W_K; W_V] of `Projections` is applied in two parts:
W_Q to x, [W_K; W_V] to the memory. The memory's keys and values depend only on the source, so
during decoding they are computed once and kept in the layer's cache.
"""

import torch.nn.functional as F

from glassformer.model.attention import Projections, attend_math
from glassformer.model.hooks import HookPoint


class CrossAttention(Projections):
    """`kernel` ("sdpa" or "math") picks how it is computed, and the hook points are those of
    SelfAttention: hooking `hook_attn_scores` or `hook_pattern` makes it take the math kernel.
    `hook_k` and `hook_v` see the memory's keys and values when they are computed (once per
    source while decoding)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.kernel = cfg.kernel
        self.dropout = cfg.dropout
        self.hook_attn_scores, self.hook_pattern = HookPoint(), HookPoint()

    def queries(self, x):
        """x (B, T, C) -> q (B, H, T, D), QK-normed if configured."""
        B, T, C = x.shape
        w, b = self.qkv.weight[:C], self.qkv.bias[:C] if self.qkv.bias is not None else None
        q = F.linear(x, w, b).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        return self.q_norm(q) if self.q_norm is not None else q

    def memory_kv(self, memory):
        """memory (B, S, C) -> k, v (B, Hkv, S, D) each."""
        B, S, C = memory.shape
        w, b = self.qkv.weight[C:], self.qkv.bias[C:] if self.qkv.bias is not None else None
        k, v = F.linear(memory, w, b).view(B, S, 2, self.kv_heads, self.head_dim).unbind(2)
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # (B, Hkv, S, D) each
        return (self.k_norm(k) if self.k_norm is not None else k), v

    def forward(self, x, memory, memory_pad=None, cache=None):
        """x (B, T, C) decoder stream; memory (B, S, C) encoder output; memory_pad (B, 1, 1, S)
        True for real source tokens, or None; cache a LayerCache whose `memory_kv` is filled on
        the first call and reused after."""
        if cache is not None and cache.memory_kv is not None:
            k, v = cache.memory_kv
        else:
            k, v = self.memory_kv(memory)  # (B, Hkv, S, D) each
            k, v = self.hook_k(k), self.hook_v(v)
            if cache is not None:
                cache.memory_kv = (k, v)
        q = self.hook_q(self.queries(x))  # (B, H, T, D)
        p = self.dropout if self.training else 0.0
        hooked = self.hook_attn_scores.active or self.hook_pattern.active
        if self.kernel == "sdpa" and not hooked:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=memory_pad, dropout_p=p,
                                               enable_gqa=self.kv_heads != self.n_head,
                                               scale=self.scale)
        else:
            y, _ = attend_math(q, k, v, memory_pad, p, self.scale, self.hook_attn_scores,
                               self.hook_pattern)
        return self.merge_heads(y)  # (B, T, C)
