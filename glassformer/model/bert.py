"""Encoder-only BERT: a bidirectional stack (model/stack.py) with one head on top.

ids (B, T) -> hidden states (B, T, C) -> masked-LM logits (B, T, V)      head "mlm"
                                      -> class logits (B, n_classes)     n_classes > 0, pooling
                                                                         "cls" / "mean" / "max"
                                      -> token-class logits (B, T, n_classes)   pooling "token"
                                      -> themselves, (B, T, C)           head "pooler" / "none":
                                         a plain encoder; `pooler` maps them to (B, C)

No causal mask: every position sees the whole sequence, except padding (key_valid).
"""

import torch
from torch import nn

from glassformer.errors import GlassformerError
from glassformer.model.mlp import ACTIVATIONS
from glassformer.model.norm import make_norm
from glassformer.model.stack import Stack, cross_entropy, init_weights


class MaskedLMHead(nn.Module):
    """BERT's: dense + activation + norm, then logits over the vocabulary through the (tied)
    token embedding matrix, plus a bias per token."""

    def __init__(self, cfg, tokens: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.act = ACTIVATIONS[cfg.activation]()  # the gated kinds: their gate's SiLU / GELU
        self.norm = make_norm(cfg)
        self.out = nn.Linear(cfg.n_embd, cfg.vocab_size)
        self.out.weight = tokens.weight  # (V, C), shared with the embeddings

    def forward(self, x):
        return self.out(self.norm(self.act(self.dense(x))))  # (B, T, C) -> (B, T, V)


def pool(x, key_valid, how: str):
    """x (B, T, C) hidden states, key_valid (B, T) True for real tokens (None: all real) ->
    (B, C): the [CLS] vector at position 0 ("cls"), or the mean ("mean") or channel-wise
    maximum ("max") over the real tokens."""
    if how == "cls":
        return x[:, 0]
    real = key_valid if key_valid is not None else torch.ones_like(x[:, :, 0], dtype=torch.bool)
    if how == "max":
        return x.masked_fill(~real[:, :, None], float("-inf")).amax(1)  # (B, C)
    weights = real.to(x.dtype)[:, :, None]  # (B, T, 1)
    return (x * weights).sum(1) / weights.sum(1)  # (B, C)


class Pooler(nn.Module):
    """BERT's pooler: dense + tanh over the [CLS] vector; transformers' `pooler_output`, on
    which BERT's next-sentence head was trained."""

    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x):
        return torch.tanh(self.dense(x[:, 0]))  # (B, T, C) -> (B, C)


class Classifier(nn.Module):
    """Pools the encoder output (`pool`; or no pooling, for token-level labels), then dense +
    tanh (BERT's pooler) and a linear layer to n_classes logits."""

    def __init__(self, cfg):
        super().__init__()
        self.pooling = cfg.pooling
        self.dense = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.n_embd, cfg.n_classes)

    def forward(self, x, key_valid=None):
        # x (B, T, C); key_valid (B, T) True for real tokens
        if self.pooling != "token":
            x = pool(x, key_valid, self.pooling)  # (B, C)
        return self.out(self.dropout(torch.tanh(self.dense(x))))  # (B, K) or (B, T, K)


class BERT(Stack):
    def __init__(self, cfg):
        super().__init__(cfg, causal=False)
        head = "classifier" if cfg.n_classes else cfg.head
        self.mlm = MaskedLMHead(cfg, self.embed.tokens) if head == "mlm" else None
        self.classifier = Classifier(cfg) if head == "classifier" else None
        self.pooler = Pooler(cfg) if head == "pooler" else None
        init_weights(self, cfg.n_layer)

    def encode(self, ids, key_valid=None, token_types=None):
        """ids (B, T), key_valid (B, T) True for real tokens (None: all real), token_types
        (B, T) segment ids (None: all 0) -> the last hidden states (B, T, C), transformers'
        `last_hidden_state`, whatever head the model has. Padded positions hold numbers that
        no real position saw; read them through key_valid."""
        return super().forward(ids, key_valid=key_valid, token_types=token_types)

    def forward(self, ids, targets=None, *, key_valid=None, token_types=None,
                label_smoothing: float = 0.0):
        """ids (B, T); key_valid (B, T) True for real tokens (None: all real).
        targets: masked LM (B, T) original ids at the chosen positions, -1 elsewhere; sequence
        classes (B,); token classes (B, T), -1 = ignore.

        Returns the head's logits and the mean cross-entropy (None without targets); a plain
        encoder (head "pooler" or "none") returns its hidden states (B, T, C) and no loss.
        """
        x = self.encode(ids, key_valid, token_types)  # (B, T, C)
        if self.mlm is None and self.classifier is None:
            if targets is not None:
                raise GlassformerError(
                    f"a plain encoder (model.head={self.cfg.head!r}) has no head to train; "
                    "train a classifier on it (--model.n_classes, --train.init_from) instead")
            return x, None
        logits = self.mlm(x) if self.mlm is not None else self.classifier(x, key_valid)
        if targets is None:
            return logits, None
        return logits, cross_entropy(logits, targets, label_smoothing)
