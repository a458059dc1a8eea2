"""Encoder-decoder (the original transformer): a bidirectional encoder stack reads the source; a
causal decoder stack, whose blocks also cross-attend the encoder output, predicts the target.

src (B, S) -> encoder -> memory (B, S, C)
ids (B, T) (the target shifted right: [BOS] y_1 .. y_{T-1}) + memory -> decoder (B, T, C)
-> logits (B, T, V) for y_1 .. y_T   (teacher forcing)

One vocabulary: the encoder, the decoder and the LM head share one token matrix (as BART does).
T5 (interop/t5.py) is this model with position="t5" (rel_shared: one bias table per stack),
RMSNorm without biases, unscaled scores (qk_scale=1.0) and, in v1.0, scale_head.
"""

from torch import nn

from glassformer.model.stack import Stack, cross_entropy, init_weights


class EncoderDecoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.encoder = Stack(cfg, causal=False)
        self.decoder = Stack(cfg, causal=True, cross=True)
        self.decoder.embed.tokens = self.encoder.embed.tokens  # one (V, C) table
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.head.weight = self.encoder.embed.tokens.weight
        init_weights(self, cfg.n_layer)

    def encode(self, src, src_valid=None):
        """src (B, S) source ids; src_valid (B, S) True for real tokens -> memory (B, S, C)."""
        return self.encoder(src, key_valid=src_valid)

    def decode(self, ids, memory, src_valid=None, *, key_valid=None, cache=None):
        """ids (B, T) decoder input; memory (B, S, C) -> logits (B, T, V). With a cache, ids are
        the new positions only, and the memory's keys/values are computed on the first call."""
        x = self.decoder(ids, key_valid=key_valid, cache=cache, memory=memory,
                         memory_valid=src_valid)  # (B, T, C)
        if self.cfg.scale_head:  # T5 v1.0: its tied head is the N(0, 1) embedding matrix
            x = x * self.cfg.n_embd ** -0.5
        return self.head(x)

    def forward(self, src, ids, targets=None, *, src_valid=None, key_valid=None,
                label_smoothing: float = 0.0):
        """src (B, S), src_valid (B, S); ids (B, T) decoder input, key_valid (B, T);
        targets (B, T) next target ids, -1 on padding.

        Returns logits (B, T, V) and the mean cross-entropy (None without targets).
        """
        logits = self.decode(ids, self.encode(src, src_valid), src_valid, key_valid=key_valid)
        if targets is None:
            return logits, None
        return logits, cross_entropy(logits, targets, label_smoothing)
