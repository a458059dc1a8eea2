"""Classifying text with a trained encoder: a `bert` run trained on the genre task, or
fine-tuned on text<TAB>label files (task 'tsv'), whose labels it keeps."""

from __future__ import annotations

import torch

from glassformer.data.genre import GENRES
from glassformer.data.labelled import encode, model_input
from glassformer.errors import GlassformerError


def label_names(cfg) -> tuple[str, ...]:
    """The names of a classifier's outputs: its own labels; else the genres for 4 outputs (a
    genre run keeps none), transformers' LABEL_i for others."""
    if not cfg.n_classes:
        raise GlassformerError("this run has no classifier; train one with `glassformer train "
                               "--preset shakespeare-genre` or `glassformer finetune RUN "
                               "--task tsv`")
    if cfg.labels:
        return cfg.labels
    return tuple(GENRES) if cfg.n_classes == len(GENRES) else tuple(
        f"LABEL_{i}" for i in range(cfg.n_classes))


@torch.no_grad()
def classify(model, tokenizer, texts: list[str]) -> list[dict[str, float]]:
    """For each text, {label: probability}, most likely first. A text is read as the task read
    its training texts: [CLS] text [SEP], the text cut to block_size - 2 tokens."""
    names = label_names(model.cfg)
    if not all(texts):
        raise GlassformerError("a text to classify is empty")
    model.eval()
    device = next(model.parameters()).device
    rows = [encode(tokenizer, text, model.cfg.block_size) for text in texts]
    batch = model_input(rows, tokenizer.special("[PAD]"), device)  # ids, key_valid (B, T)
    probs = torch.softmax(model(**batch)[0].float(), -1).tolist()  # (B, n_classes)
    return [dict(sorted(zip(names, p), key=lambda kv: -kv[1])) for p in probs]
