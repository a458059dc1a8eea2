"""A transformer block: attention then feed-forward, each wrapped in a residual connection and a norm.

pre-norm  (GPT-2):       x = x + drop(attn(norm1(x)));  x = x + drop(mlp(norm2(x)))
post-norm (original):    x = norm1(x + drop(attn(x)));  x = norm2(x + drop(mlp(x)))
"""

from torch import nn

from glassformer.model.attention import SelfAttention
from glassformer.model.linear_attention import LinearAttention
from glassformer.model.mlp import MLP
from glassformer.model.moe import MoE
from glassformer.model.norm import make_norm


class Block(nn.Module):
    def __init__(self, cfg, causal: bool = True):
        super().__init__()
        self.norm1 = make_norm(cfg)
        self.attn = (LinearAttention if cfg.attention == "linear" else SelfAttention)(cfg, causal)
        self.norm2 = make_norm(cfg)
        self.mlp = MoE(cfg) if cfg.moe_experts else MLP(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.pre_norm = cfg.norm_placement == "pre"

    def forward(self, x, pad=None, cache=None, positions=None):
        # x (B, T, C) -> (B, T, C)
        if self.pre_norm:
            x = x + self.dropout(self.attn(self.norm1(x), pad, cache, positions))
            return x + self.dropout(self.mlp(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.attn(x, pad, cache, positions)))
        return self.norm2(x + self.dropout(self.mlp(x)))
