"""Scaled dot-product attention and multi-head self-attention.

attention(Q, K, V) = softmax(Q K^T / sqrt(D) + mask) V, computed two ways that give the same
numbers: torch's fused `scaled_dot_product_attention` (default, fast) and the explicit math path
(scores -> mask -> softmax -> weights @ V), which also returns the weights for inspection.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from glassformer.model.masks import combine


def attend_math(q, k, v, mask=None, dropout_p: float = 0.0):
    """q (B, H, T, D), k and v (B, H, S, D), mask bool broadcastable to (B, H, T, S) or None.

    Returns the output (B, H, T, D) and the attention weights (B, H, T, S).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, T, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # rows sum to 1; masked keys get exactly 0
    dropped = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    return dropped @ v, weights  # (B, H, T, D), (B, H, T, S)


class SelfAttention(nn.Module):
    """Multi-head self-attention: fused q,k,v projection, H heads of width D, output projection.

    `weights` is an identity module the math path sends its (B, H, T, S) attention weights
    through, so a forward hook on it captures them without changing the model.
    """

    def __init__(self, cfg, causal: bool = True):
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # rows: [W_Q; W_K; W_V]
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)  # W_O
        self.causal = causal
        self.impl = cfg.attention
        self.dropout = cfg.dropout
        self.weights = nn.Identity()

    def forward(self, x, pad=None, cache=None):
        """x (B, T, C); pad (B, 1, 1, S) True for real keys, or None; cache a LayerCache or None."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        v = v.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, S, D), S = cached + T
        y = self._attend(q, k, v, pad)  # (B, H, T, D)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again: (B, T, C)
        return self.proj(y)

    def _attend(self, q, k, v, pad):
        T, S = q.size(2), k.size(2)
        p = self.dropout if self.training else 0.0
        if self.impl == "sdpa" and pad is None and (T == S or T == 1):
            # The common cases need no mask tensor: training (causal, T == S) and
            # one-token decoding (the new token sees every cached key).
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p,
                                                  is_causal=self.causal and T == S and T > 1)
        mask = combine(T, S, self.causal, pad, q.device)
        if self.impl == "sdpa":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y, weights = attend_math(q, k, v, mask, p)
        self.weights(weights)
        return y
