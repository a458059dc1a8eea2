"""Normalisation over the feature axis.

layernorm  gamma * (x - mean) / sqrt(var + eps) + beta, with the biased variance
           (exactly torch.nn.LayerNorm; beta only with cfg.bias)
rmsnorm    gamma * x / sqrt(mean(x^2) + eps): no centring, no beta (torch.nn.RMSNorm, Llama)

Each norm has two hook points (model/hooks.py): `hook_normalized`, its output (..., C), and
`hook_scale`, the divisor sqrt(var + eps) or sqrt(mean(x^2) + eps) (..., 1). The fused kernel
never forms the scale, so it is computed beside it only while `hook_scale` is hooked; a hook
that returns another scale makes the norm divide by that one instead (direct logit attribution
freezes the final norm's scale this way, as TransformerLens does).
"""

import torch
from torch import nn

from glassformer.model.hooks import HookPoint


class ScaleHooks:
    """The hook points of a norm, and its forward around the fused kernel."""

    def __init__(self):
        self.hook_scale = HookPoint()
        self.hook_normalized = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)  # the fused kernel, (..., C)
        if self.hook_scale.active:
            centred = self.centre(x)  # (..., C)
            scale = (centred.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()  # (..., 1)
            hooked = self.hook_scale(scale)
            if hooked is not scale:  # replaced: normalise by the new scale
                y = centred / hooked * self.weight
                y = y + self.bias if getattr(self, "bias", None) is not None else y
        return self.hook_normalized(y)


class LayerNorm(ScaleHooks, nn.LayerNorm):
    def __init__(self, dim: int, eps: float, bias: bool):
        nn.LayerNorm.__init__(self, dim, eps=eps, bias=bias)
        ScaleHooks.__init__(self)

    def centre(self, x):
        return x - x.mean(-1, keepdim=True)


class RMSNorm(ScaleHooks, nn.RMSNorm):
    def __init__(self, dim: int, eps: float):
        nn.RMSNorm.__init__(self, dim, eps=eps)
        ScaleHooks.__init__(self)

    def centre(self, x):
        return x  # no centring


def make_norm(cfg, dim: int | None = None) -> nn.Module:
    """The norm `cfg.norm` names, over `dim` features (default: the model width)."""
    dim = dim or cfg.n_embd
    if cfg.norm == "rmsnorm":
        return RMSNorm(dim, eps=cfg.norm_eps)
    return LayerNorm(dim, eps=cfg.norm_eps, bias=cfg.bias)
