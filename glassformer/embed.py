"""Sentence embeddings: one vector per text from an encoder (a `bert` run or checkpoint), made
the way its config says (as sentence-transformers does for all-MiniLM-L6-v2):

  [CLS] text [SEP] -> hidden states (B, T, C) -> pool over real tokens (B, C) -> [normalize]

pooling: ModelConfig.pooling ("cls", "mean" or "max"); normalize: .normalize_embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from glassformer.errors import GlassformerError
from glassformer.model.bert import pool
from glassformer.tokenizers import HFTokenizer

BATCH = 32  # texts per forward pass


@torch.no_grad()
def embed(model, tokenizer, texts: list[str]) -> torch.Tensor:
    """(B, C) float32 vectors of `texts` (on the CPU), pooled as model.cfg says. A text longer
    than the model's context (block_size tokens) is refused, not cut."""
    cfg = model.cfg
    if cfg.family != "bert" or cfg.pooling == "token":
        raise GlassformerError(f"embed needs a bert encoder pooling 'cls', 'mean' or 'max'; "
                               f"this is a {cfg.family} model pooling {cfg.pooling!r}")
    if not isinstance(tokenizer, HFTokenizer):
        raise GlassformerError(f"a {type(tokenizer).__name__} cannot make an encoder's input "
                               "([CLS] text [SEP]); embed a run with its checkpoint's tokenizer")
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(texts), BATCH):
        ids, valid = tokenizer.encode_batch(texts[start:start + BATCH])  # (B, T) each
        if ids.size(1) > cfg.block_size:
            longest = texts[start + int(valid.sum(1).argmax())]
            raise GlassformerError(f"a text is {ids.size(1)} tokens, more than the model's "
                                   f"{cfg.block_size}: {longest[:60]!r}...; shorten it")
        ids, valid = ids.to(device), valid.to(device)
        vectors = pool(model.encode(ids, valid).float(), valid, cfg.pooling)  # (B, C)
        if cfg.normalize_embeddings:
            vectors = F.normalize(vectors, dim=-1)
        out.append(vectors.cpu())
    return torch.cat(out) if out else torch.zeros(0, cfg.n_embd)


def cosine(vectors: torch.Tensor) -> torch.Tensor:
    """vectors (B, C) -> (B, B): the cosine similarity of every pair."""
    unit = F.normalize(vectors, dim=-1)
    return unit @ unit.T
