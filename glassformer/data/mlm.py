"""Masked-language-model data (BERT): passages wrapped as [CLS] text [SEP], some tokens hidden.

Of the real (non-special) tokens, each is chosen with probability 15%; of the chosen, 80% become
[MASK], 10% a random token and 10% stay as they are. The loss is taken only at chosen positions:
the targets are the original ids there and -1 elsewhere.

Shapes: B batch, T block length (block_size).
"""

from __future__ import annotations

import numpy as np
import torch

from glassformer.tokenizers.special import CLS, ENCODER, MASK, SEP


def wrap(rows: torch.Tensor, cls: int = CLS, sep: int = SEP) -> torch.Tensor:
    """rows (B, T-2) token ids -> (B, T) with [CLS] in front and [SEP] at the end (their ids:
    ours, or a checkpoint tokenizer's)."""
    B = rows.size(0)
    return torch.cat([rows.new_full((B, 1), cls), rows, rows.new_full((B, 1), sep)], dim=1)


def mask_tokens(ids: torch.Tensor, vocab_size: int, generator: torch.Generator,
                p: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (B, T) -> (inputs, targets), both (B, T): inputs with the chosen tokens replaced
    80/10/10 by [MASK] / a random real token / themselves; targets the original ids at the chosen
    positions, -1 elsewhere. Special tokens are never chosen."""
    real = ids >= len(ENCODER)  # (B, T)
    chosen = real & (torch.rand(ids.shape, generator=generator) < p)
    how = torch.rand(ids.shape, generator=generator)  # one draw decides mask / random / keep
    random_ids = torch.randint(len(ENCODER), vocab_size, ids.shape, generator=generator)
    inputs = torch.where(chosen & (how < 0.8), MASK, ids)
    inputs = torch.where(chosen & (how >= 0.8) & (how < 0.9), random_ids, inputs)
    return inputs, torch.where(chosen, ids, -1)


def mlm_batch(tokens, batch_size: int, block_size: int, vocab_size: int,
              generator: torch.Generator, device="cpu") -> dict:
    """Random passages of block_size-2 tokens from the flat token array, wrapped and masked:
    the keyword arguments of BERT.forward."""
    T = block_size - 2
    offsets = torch.randint(len(tokens) - T + 1, (batch_size,), generator=generator)  # (B,)
    rows = torch.from_numpy(np.stack([np.asarray(tokens[o:o + T], dtype=np.int64)
                                      for o in offsets.tolist()]))  # (B, T-2)
    inputs, targets = mask_tokens(wrap(rows), vocab_size, generator)  # (B, T) each
    return {"ids": inputs.to(device), "targets": targets.to(device)}
