"""Decoder-only GPT: a causal stack (model/stack.py) and an LM head.

ids (B, T) -> hidden states (B, T, C) -> logits (B, T, V)
"""

from torch import nn

from glassformer.model.stack import Stack, cross_entropy, init_weights


class GPT(Stack):
    def __init__(self, cfg):
        super().__init__(cfg, causal=True)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.head.weight = self.embed.tokens.weight  # one (V, C) matrix, two uses
        self.init_weights()

    def init_weights(self):
        init_weights(self, self.cfg.n_layer)

    def forward(self, ids, targets=None, *, positions=None, key_valid=None, cache=None,
                label_smoothing: float = 0.0):
        """ids (B, T); targets (B, T) next-token ids (-1 = ignore), or None; positions,
        key_valid and cache as in Stack.forward.

        Returns logits (B, T, V) and the mean cross-entropy (or None without targets); in
        training mode with experts, plus moe_aux_weight * the layers' load-balancing losses.
        """
        x = super().forward(ids, positions=positions, key_valid=key_valid, cache=cache)
        logits = self.head(x)  # (B, T, V)
        if targets is None:
            return logits, None
        loss = cross_entropy(logits, targets, label_smoothing)
        if self.cfg.moe_experts and self.training:
            # Mixture of experts: training also minimises each router's load-balancing loss;
            # evaluation reports the cross-entropy alone.
            loss = loss + self.cfg.moe_aux_weight * sum(block.mlp.aux_loss for block in self.blocks)
        return logits, loss
