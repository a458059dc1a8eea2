"""The recurrent baseline of the courses' first lesson ("attention vs recurrence"): an LSTM
language model, compared with a transformer of similar size on the same data and budget.

ids (B, T) -> token vectors (B, T, C) -> n_layer LSTM layers of width C (B, T, C) -> logits (B, T, V)

Order comes from the recurrence itself (no positions); each step depends on the previous one,
so the T positions of a sequence cannot be computed in parallel as attention's can.
"""

from torch import nn

from glassformer.model.stack import cross_entropy


class LSTMLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.lstm = nn.LSTM(cfg.n_embd, cfg.n_embd, cfg.n_layer, batch_first=True,
                            dropout=cfg.dropout if cfg.n_layer > 1 else 0.0)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.head.weight = self.embed.weight

    def forward(self, ids, targets=None, *, label_smoothing: float = 0.0):
        """ids (B, T); targets (B, T) next-token ids (-1 = ignore), or None.
        Returns logits (B, T, V) and the mean cross-entropy (None without targets)."""
        x, _ = self.lstm(self.embed(ids))  # (B, T, C); the final (h, c) states are not kept
        logits = self.head(x)  # (B, T, V)
        if targets is None:
            return logits, None
        return logits, cross_entropy(logits, targets, label_smoothing)
