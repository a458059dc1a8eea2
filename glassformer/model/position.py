"""Positions added to the token embeddings (attention alone ignores order):

learned     a trained table P (block_size, C), as in GPT-2
sinusoidal  fixed PE[pos, 2i] = sin(pos / 10000^(2i/C)), PE[pos, 2i+1] = cos(pos / 10000^(2i/C)),
            as in "Attention Is All You Need"

"rope" works inside attention instead (model/rope.py), and "none" adds nothing.
"""

import torch
from torch import nn


def sinusoidal_table(n_positions: int, dim: int) -> torch.Tensor:
    """The (n_positions, dim) table of sines (even columns) and cosines (odd columns)."""
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (P, 1)
    two_i = torch.arange(0, dim, 2, dtype=torch.float64)  # (ceil(C/2),)
    angle = pos / (10000.0 ** (two_i / dim))  # (P, ceil(C/2))
    table = torch.zeros(n_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : dim // 2])
    return table.float()


class LearnedPositions(nn.Module):
    def __init__(self, block_size: int, dim: int):
        super().__init__()
        self.table = nn.Embedding(block_size, dim)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.table(positions)  # (..., T) -> (..., T, C)


class SinusoidalPositions(nn.Module):
    def __init__(self, block_size: int, dim: int):
        super().__init__()
        # A buffer, not a parameter, and not saved: it is recomputed from the config.
        self.register_buffer("table", sinusoidal_table(block_size, dim), persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.table[positions]  # (..., T) -> (..., T, C)


POSITIONS = {"learned": LearnedPositions, "sinusoidal": SinusoidalPositions}


def make_positions(cfg) -> nn.Module | None:
    """The module whose vectors `cfg.position` adds to the embeddings, or None."""
    if cfg.position not in POSITIONS:
        return None
    return POSITIONS[cfg.position](cfg.block_size, cfg.n_embd)

