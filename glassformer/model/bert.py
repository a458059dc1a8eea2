"""Encoder-only BERT: a bidirectional stack (model/stack.py) with one head on top.

ids (B, T) -> hidden states (B, T, C) -> masked-LM logits (B, T, V)      n_classes = 0
                                      -> class logits (B, n_classes)     pooling "cls" / "mean"
                                      -> token-class logits (B, T, n_classes)   pooling "token"

No causal mask: every position sees the whole sequence, except padding (key_valid).
"""

import torch
from torch import nn

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


class Classifier(nn.Module):
    """Pools the encoder output (the [CLS] vector at position 0, or the mean over real tokens;
    or no pooling, for token-level labels), then dense + tanh (BERT's pooler) and a linear layer
    to n_classes logits."""

    def __init__(self, cfg):
        super().__init__()
        self.pooling = cfg.pooling
        self.dense = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.n_embd, cfg.n_classes)

    def forward(self, x, key_valid=None):
        # x (B, T, C); key_valid (B, T) True for real tokens
        if self.pooling == "cls":
            x = x[:, 0]  # (B, C)
        elif self.pooling == "mean":
            real = key_valid if key_valid is not None else torch.ones_like(x[:, :, 0])  # (B, T)
            weights = real.to(x.dtype)[:, :, None]  # (B, T, 1)
            x = (x * weights).sum(1) / weights.sum(1)  # (B, C)
        return self.out(self.dropout(torch.tanh(self.dense(x))))  # (B, K) or (B, T, K)


class BERT(Stack):
    def __init__(self, cfg):
        super().__init__(cfg, causal=False)
        self.mlm = MaskedLMHead(cfg, self.embed.tokens) if cfg.n_classes == 0 else None
        self.classifier = Classifier(cfg) if cfg.n_classes else None
        init_weights(self, cfg.n_layer)

    def encode(self, ids, key_valid=None, token_types=None):
        """ids (B, T), key_valid (B, T) -> hidden states (B, T, C)."""
        return super().forward(ids, key_valid=key_valid, token_types=token_types)

    def forward(self, ids, targets=None, *, key_valid=None, token_types=None,
                label_smoothing: float = 0.0):
        """ids (B, T); key_valid (B, T) True for real tokens (None: all real).
        targets: masked LM (B, T) original ids at the chosen positions, -1 elsewhere; sequence
        classes (B,); token classes (B, T), -1 = ignore.

        Returns the head's logits and the mean cross-entropy (None without targets).
        """
        x = self.encode(ids, key_valid, token_types)  # (B, T, C)
        logits = self.mlm(x) if self.mlm is not None else self.classifier(x, key_valid)
        if targets is None:
            return logits, None
        return logits, cross_entropy(logits, targets, label_smoothing)
