"""Normalisation over the feature axis: LayerNorm(x) = gamma * (x - mean) / sqrt(var + eps) + beta,
with the biased variance, exactly torch.nn.LayerNorm."""

from torch import nn


def make_norm(cfg) -> nn.Module:
    """The norm used throughout a model of config `cfg` (beta exists only with cfg.bias)."""
    return nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps, bias=cfg.bias)
