"""Rotary position embeddings (RoPE, Su et al. 2021), applied to q and k in every attention layer.

Channel pair i of a head (channels i and i + D/2, the "rotate half" layout of Llama and GPT-NeoX)
is rotated by the angle position * base^(-2i/D). A rotated q·k depends only on the distance
between the two positions, so attention sees relative positions.
"""

import torch
from torch import nn


class Rotary(nn.Module):
    def __init__(self, head_dim: int, base: float):
        super().__init__()
        # 1 / base^(2i/D), computed as Llama does, so the angles match to the last bit
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (D/2,)

    def forward(self, q, k, positions):
        """q (B, H, T, D), k (B, Hkv, T, D), positions (T,) or (B, T) -> rotated q, k."""
        angles = positions.float()[..., None] * self.inv_freq  # (T, D/2) or (B, T, D/2)
        angles = torch.cat([angles, angles], dim=-1)  # (..., T, D): pair i at i and i + D/2
        if angles.dim() == 3:
            angles = angles[:, None]  # (B, 1, T, D), broadcast over heads
        cos, sin = angles.cos().to(q.dtype), angles.sin().to(q.dtype)
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def rotate_half(x):
    """(x1, x2) -> (-x2, x1) on the two halves of the last axis."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)
