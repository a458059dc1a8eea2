"""Decoder-only GPT: embeddings + positions -> N causal blocks -> final norm -> LM head.

ids (B, T) -> embeddings (B, T, C) -> blocks (B, T, C) -> logits (B, T, V)
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from glassformer.model.block import Block
from glassformer.model.embedding import Embeddings
from glassformer.model.masks import padding_mask
from glassformer.model.norm import make_norm


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed = Embeddings(cfg)
        self.blocks = nn.ModuleList(Block(cfg, causal=True) for _ in range(cfg.n_layer))
        # Post-norm blocks already end in a norm; pre-norm stacks need one before the head.
        self.norm = make_norm(cfg) if cfg.norm_placement == "pre" else nn.Identity()
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.head.weight = self.embed.tokens.weight  # one (V, C) matrix, two uses
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        """GPT-2's init: N(0, 0.02) everywhere, residual output projections scaled by
        1/sqrt(2 * n_layer) so the residual stream's variance does not grow with depth."""
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * self.cfg.n_layer))
            elif p.dim() >= 2:
                nn.init.normal_(p, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
            else:
                nn.init.ones_(p)  # norm gains

    def forward(self, ids, targets=None, *, positions=None, key_valid=None, cache=None):
        """ids (B, T) token ids.
        targets (B, T) next-token ids (-1 = ignore), or None.
        positions (T,) or (B, T); default: the next T positions after what `cache` holds.
        key_valid (B, S) True for real tokens over all S keys (cached + new), for padded batches.
        cache a KVCache, filled in place.

        Returns logits (B, T, V) and the mean cross-entropy (or None without targets); in
        training mode with experts, plus moe_aux_weight * the layers' load-balancing losses.
        """
        T = ids.size(1)
        start = cache.length if cache is not None else 0
        if start + T > self.cfg.block_size:
            raise ValueError(f"sequence of {start + T} tokens is longer than block_size "
                             f"{self.cfg.block_size}")
        if positions is None:
            positions = torch.arange(start, start + T, device=ids.device)  # (T,)
        pad = padding_mask(key_valid) if key_valid is not None else None  # (B, 1, 1, S)
        x = self.embed(ids, positions)  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, pad, cache.layers[i] if cache is not None else None, positions)
        logits = self.head(self.norm(x))  # (B, T, V)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        if self.cfg.moe_experts and self.training:
            # Mixture of experts: training also minimises each router's load-balancing loss;
            # evaluation reports the cross-entropy alone.
            loss = loss + self.cfg.moe_aux_weight * sum(block.mlp.aux_loss for block in self.blocks)
        return logits, loss
