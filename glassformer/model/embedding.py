"""Token embedding: ids index a table E (V, C); absolute positions, if any, are added; dropout.

With fixed sinusoids (values of size ~1) the token vectors are scaled by sqrt(C), as in
"Attention Is All You Need" (section 3.4); otherwise N(0, 0.02) tokens would drown in them.
"""

import math

import torch
from torch import nn

from glassformer.model.position import make_positions


class Embeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.positions = make_positions(cfg)
        self.scale = math.sqrt(cfg.n_embd) if cfg.position == "sinusoidal" else 1.0
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        # ids (B, T); positions (T,) shared by the batch or (B, T) per sequence
        x = self.tokens(ids) * self.scale  # (B, T, C)
        if self.positions is not None:
            x = x + self.positions(positions)  # (B, T, C)
        return self.dropout(x)
