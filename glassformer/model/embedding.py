"""Token embedding: ids index a table E (V, C); positions are added; dropout follows."""

import torch
from torch import nn

from glassformer.model.position import make_positions


class Embeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.positions = make_positions(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        # ids (B, T); positions (T,) shared by the batch or (B, T) per sequence
        x = self.tokens(ids) + self.positions(positions)  # (B, T, C)
        return self.dropout(x)
