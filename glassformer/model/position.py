"""Positions: how order enters a model (attention alone ignores it). Each scheme acts in one
place, given by config.POSITION_ACTS_ON; this module builds the part that acts there.

scheme      acts on      what                                                   part (module)
learned     embeddings   a trained table P (block_size, C) added, as in GPT-2   LearnedPositions
sinusoidal  embeddings   fixed PE[pos, 2i] = sin(pos / 10000^(2i/C)),           SinusoidalPositions
                         PE[pos, 2i+1] = cos(pos / 10000^(2i/C)), added, as in
                         "Attention Is All You Need"
rope        qk           pair i of each head's q and k rotated by               Rotary (rope.py)
                         pos * base^(-2i/D)
alibi       scores       head h adds -m_h |i - j| to its scores                 ALiBi (alibi.py)
t5          scores       a learned bias per head and bucket of j - i            RelativeBias
                                                                                (relative_bias.py)
none        nowhere      nothing (a causal mask alone leaks order)

The embeddings ask `make_positions(cfg)`, attention asks `rotary(cfg)` and `score_bias(cfg,
causal)`: each returns the part, or None when the scheme acts elsewhere.
"""

import math

import torch
from torch import nn

from glassformer.config import POSITION_ACTS_ON
from glassformer.model.alibi import ALiBi
from glassformer.model.relative_bias import RelativeBias
from glassformer.model.rope import Rotary


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


# The part each scheme builds, from the config and whether attention is causal (T5's bias
# buckets keys on both sides of the query only when it is not).
PARTS = {
    "learned": lambda cfg, causal: LearnedPositions(cfg.block_size, cfg.n_embd),
    "sinusoidal": lambda cfg, causal: SinusoidalPositions(cfg.block_size, cfg.n_embd),
    "rope": lambda cfg, causal: Rotary(cfg.head_dim, cfg.rope_base),
    "alibi": lambda cfg, causal: ALiBi(cfg.n_head),
    "t5": lambda cfg, causal: RelativeBias(cfg, bidirectional=not causal),
}


def _part_acting_on(where: str, cfg, causal: bool = True) -> nn.Module | None:
    return PARTS[cfg.position](cfg, causal) if POSITION_ACTS_ON[cfg.position] == where else None


def make_positions(cfg) -> nn.Module | None:
    """The module whose vectors `cfg.position` adds to the embeddings, or None."""
    return _part_acting_on("embeddings", cfg)


def rotary(cfg) -> Rotary | None:
    """The rotation `cfg.position` applies to each head's q and k, or None."""
    return _part_acting_on("qk", cfg)


def score_bias(cfg, causal: bool) -> nn.Module | None:
    """The module whose (H, T, S) bias `cfg.position` adds to the attention scores, or None."""
    return _part_acting_on("scores", cfg, causal)


def token_scale(cfg) -> float:
    """What the token vectors are multiplied by: sqrt(C) beside fixed sinusoids, whose values of
    size ~1 would drown N(0, 0.02) tokens ("Attention Is All You Need", section 3.4); else 1."""
    return math.sqrt(cfg.n_embd) if cfg.position == "sinusoidal" else 1.0
