"""A transformer block: attention then feed-forward, each wrapped in a residual connection and a
norm; a decoder block of an encoder-decoder has cross-attention to the encoder output between.

pre-norm  (GPT-2):       x = x + drop(sublayer(norm(x)))      for each sublayer in turn
post-norm (original):    x = norm(x + drop(sublayer(x)))

Hook points (model/hooks.py), all (B, T, C): hook_resid_pre (the block's input), hook_attn_out,
hook_resid_mid (after attention), hook_cross_out and hook_resid_cross (decoder blocks of an
encoder-decoder: after cross-attention), hook_mlp_out, hook_resid_post (the block's output).
A sublayer's output is hooked before dropout and the residual add.
"""

from torch import nn

from glassformer.model.attention_kinds import ATTENTION
from glassformer.model.cross_attention import CrossAttention
from glassformer.model.hooks import HookPoint
from glassformer.model.mlp import MLP
from glassformer.model.moe import MoE
from glassformer.model.norm import make_norm


class Block(nn.Module):
    def __init__(self, cfg, causal: bool = True, cross: bool = False):
        super().__init__()
        self.norm1 = make_norm(cfg)
        self.attn = ATTENTION[cfg.attention].layer(cfg, causal)  # softmax or linear
        self.norm_cross = make_norm(cfg) if cross else None
        self.cross = CrossAttention(cfg) if cross else None
        self.norm2 = make_norm(cfg)
        self.mlp = MoE(cfg) if cfg.moe_experts else MLP(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.pre_norm = cfg.norm_placement == "pre"
        self.hook_resid_pre, self.hook_attn_out, self.hook_resid_mid = (HookPoint(), HookPoint(),
                                                                        HookPoint())
        self.hook_cross_out = HookPoint() if cross else None
        self.hook_resid_cross = HookPoint() if cross else None
        self.hook_mlp_out, self.hook_resid_post = HookPoint(), HookPoint()

    def forward(self, x, pad=None, cache=None, positions=None, memory=None, memory_pad=None):
        """x (B, T, C) -> (B, T, C). pad (B, 1, 1, S) marks real keys; memory (B, S_src, C) and
        memory_pad (B, 1, 1, S_src) are the encoder output and its padding (decoder blocks)."""
        x = self.hook_resid_pre(x)
        x = self.residual(x, self.norm1, lambda h: self.attn(h, pad, cache, positions),
                          self.hook_attn_out)
        x = self.hook_resid_mid(x)
        if self.cross is not None:
            x = self.residual(x, self.norm_cross,
                              lambda h: self.cross(h, memory, memory_pad, cache),
                              self.hook_cross_out)
            x = self.hook_resid_cross(x)
        return self.hook_resid_post(self.residual(x, self.norm2, self.mlp, self.hook_mlp_out))

    def residual(self, x, norm, sublayer, hook_out):
        if self.pre_norm:
            return x + self.dropout(hook_out(sublayer(norm(x))))
        return norm(x + self.dropout(hook_out(sublayer(x))))
