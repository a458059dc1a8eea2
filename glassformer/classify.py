"""Classifying text with a trained encoder (a `bert` run trained on the genre task)."""

from __future__ import annotations

import torch

from glassformer.data.genre import GENRES
from glassformer.data.mlm import wrap
from glassformer.errors import GlassformerError


@torch.no_grad()
def classify(model, tokenizer, texts: list[str]) -> list[dict[str, float]]:
    """For each text, {genre: probability}, most likely first. A text longer than the model's
    passage length is cut to its first block_size - 2 characters."""
    if model.cfg.n_classes != len(GENRES):
        raise GlassformerError("this run has no genre classifier; train one with "
                               "`glassformer train --preset shakespeare-genre`")
    model.eval()
    device = next(model.parameters()).device
    length = model.cfg.block_size - 2
    out = []
    for text in texts:
        if not text:
            raise GlassformerError("the text to classify is empty")
        ids = wrap(torch.tensor([tokenizer.encode(text[:length])], device=device),
                   tokenizer.special("[CLS]"), tokenizer.special("[SEP]"))  # (1, T)
        probs = torch.softmax(model(ids)[0][0].float(), -1).tolist()  # (n_classes,)
        out.append(dict(sorted(zip(GENRES, probs), key=lambda kv: -kv[1])))
    return out
