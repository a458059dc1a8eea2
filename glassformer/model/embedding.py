"""Token embedding: ids index a table E (V, C); absolute positions, if any, and BERT's segment
(token-type) vectors, if any, are added; then an optional norm (BERT, BART) and dropout.

With fixed sinusoids (values of size ~1) the token vectors are scaled by sqrt(C), as in
"Attention Is All You Need" (section 3.4); otherwise N(0, 0.02) tokens would drown in them.

Hook points (model/hooks.py): hook_embed, the (scaled) token vectors (B, T, C), and
hook_pos_embed, the absolute position vectors (T, C) or (B, T, C), when there are any.
"""

import torch
from torch import nn

from glassformer.model.hooks import HookPoint
from glassformer.model.norm import make_norm
from glassformer.model.position import make_positions, token_scale


class Embeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.positions = make_positions(cfg)
        self.types = nn.Embedding(cfg.type_vocab_size, cfg.n_embd) if cfg.type_vocab_size else None
        self.norm = make_norm(cfg) if cfg.embed_norm else None
        self.scale = token_scale(cfg)  # sqrt(C) beside fixed sinusoids, else 1
        self.dropout = nn.Dropout(cfg.dropout)
        self.hook_embed = HookPoint()
        self.hook_pos_embed = HookPoint() if self.positions is not None else None

    def forward(self, ids: torch.Tensor, positions: torch.Tensor,
                token_types: torch.Tensor | None = None) -> torch.Tensor:
        # ids (B, T); positions (T,) shared by the batch or (B, T) per sequence;
        # token_types (B, T) segment ids, default 0 (BERT's "sentence A")
        x = self.hook_embed(self.tokens(ids) * self.scale)  # (B, T, C)
        if self.types is not None:
            x = x + self.types(token_types if token_types is not None else torch.zeros_like(ids))
        if self.positions is not None:
            x = x + self.hook_pos_embed(self.positions(positions))  # (B, T, C)
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)
