"""Normalisation over the feature axis.

layernorm  gamma * (x - mean) / sqrt(var + eps) + beta, with the biased variance
           (exactly torch.nn.LayerNorm; beta only with cfg.bias)
rmsnorm    gamma * x / sqrt(mean(x^2) + eps): no centring, no beta (torch.nn.RMSNorm, Llama)
"""

from torch import nn


def make_norm(cfg, dim: int | None = None) -> nn.Module:
    """The norm `cfg.norm` names, over `dim` features (default: the model width)."""
    dim = dim or cfg.n_embd
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(dim, eps=cfg.norm_eps)
    return nn.LayerNorm(dim, eps=cfg.norm_eps, bias=cfg.bias)
