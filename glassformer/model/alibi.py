"""ALiBi (Press et al., 2022, "Train Short, Test Long"): no position vectors at all; head h adds
-m_h * |i - j| to the score of query i for key j, a penalty that grows linearly with distance.

Slopes m_h: for H a power of two, the geometric sequence 2^(-8/H), 2^(-16/H), ..., 2^(-8);
otherwise those of the nearest lower power of two M, followed by every other slope of 2M.
"""

import math

import torch
from torch import nn


def alibi_slopes(n_head: int) -> torch.Tensor:
    """The (H,) slopes of the paper (and of its reference code, as Bloom and MPT use them)."""
    def geometric(n):
        return [2 ** (-8 * (i + 1) / n) for i in range(n)]

    m = 2 ** math.floor(math.log2(n_head))
    slopes = geometric(m) + geometric(2 * m)[0::2][: n_head - m]
    return torch.tensor(slopes, dtype=torch.float32)


class ALiBi(nn.Module):
    def __init__(self, n_head: int):
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(n_head), persistent=False)  # (H,)

    def forward(self, T: int, S: int) -> torch.Tensor:
        """The (H, T, S) bias for T queries, the last of S positions, over S keys."""
        q_pos = torch.arange(S - T, S, device=self.slopes.device)[:, None]  # (T, 1)
        k_pos = torch.arange(S, device=self.slopes.device)[None, :]  # (1, S)
        distance = (q_pos - k_pos).abs().float()  # (T, S); future keys are masked when causal
        return -self.slopes[:, None, None] * distance  # (H, T, S)
