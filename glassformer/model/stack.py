"""The trunk every family shares: embeddings -> N blocks -> final norm (pre-norm only).

A causal stack is GPT's decoder; a bidirectional one is BERT's encoder; a causal stack whose
blocks also cross-attend an encoder's output is the encoder-decoder's decoder.

ids (B, T) -> embeddings (B, T, C) -> blocks (B, T, C) -> hidden states (B, T, C)
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from glassformer.model.block import Block
from glassformer.model.embedding import Embeddings
from glassformer.model.masks import padding_mask
from glassformer.model.norm import make_norm


class Stack(nn.Module):
    def __init__(self, cfg, causal: bool, cross: bool = False):
        super().__init__()
        self.cfg = cfg
        self.embed = Embeddings(cfg)
        self.blocks = nn.ModuleList(Block(cfg, causal, cross) for _ in range(cfg.n_layer))
        if cfg.rel_shared:  # T5: the first layer's relative-bias table serves every layer
            for block in self.blocks[1:]:
                block.attn.relative = self.blocks[0].attn.relative
        # Post-norm blocks already end in a norm; pre-norm stacks need one before the head.
        self.norm = make_norm(cfg) if cfg.norm_placement == "pre" else nn.Identity()

    def forward(self, ids, *, positions=None, key_valid=None, cache=None, token_types=None,
                memory=None, memory_valid=None):
        """ids (B, T) token ids.
        positions (T,) or (B, T); default: the next T positions after what `cache` holds.
        key_valid (B, S) True for real tokens over all S keys (cached + new), for padded batches.
        cache a KVCache, filled in place.
        token_types (B, T) segment ids (with cfg.type_vocab_size).
        memory (B, S_src, C) encoder output and memory_valid (B, S_src) its real tokens, for a
        stack built with cross=True.

        Returns the hidden states (B, T, C).
        """
        T = ids.size(1)
        start = cache.length if cache is not None else 0
        if start + T > self.cfg.block_size:
            raise ValueError(f"sequence of {start + T} tokens is longer than block_size "
                             f"{self.cfg.block_size}")
        if positions is None:
            positions = torch.arange(start, start + T, device=ids.device)  # (T,)
        pad = padding_mask(key_valid) if key_valid is not None else None  # (B, 1, 1, S)
        memory_pad = padding_mask(memory_valid) if memory_valid is not None else None
        x = self.embed(ids, positions, token_types)  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, pad, cache.layers[i] if cache is not None else None, positions,
                      memory, memory_pad)
        return self.norm(x)  # (B, T, C)


@torch.no_grad()
def init_weights(model: nn.Module, n_layer: int) -> None:
    """GPT-2's init for any family: N(0, 0.02) everywhere, residual output projections scaled by
    1/sqrt(2 * n_layer) so the residual stream's variance does not grow with depth."""
    for name, p in model.named_parameters():
        if name.endswith("proj.weight"):
            nn.init.normal_(p, std=0.02 / math.sqrt(2 * n_layer))
        elif p.dim() >= 2:
            nn.init.normal_(p, std=0.02)
        elif name.endswith("bias"):
            nn.init.zeros_(p)
        else:
            nn.init.ones_(p)  # norm gains


def cross_entropy(logits, targets, label_smoothing: float = 0.0):
    """Mean loss of logits (..., V) against target ids (...), ignoring targets of -1."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                           ignore_index=-1, label_smoothing=label_smoothing)
