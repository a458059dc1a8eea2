"""Position-wise feed-forward, hidden width F (cfg.hidden):

relu, gelu      FFN(x) = W2 act(W1 x + b1) + b2  (gelu: exact; gelu_tanh: GPT-2's tanh approximation)
relu2           FFN(x) = W2 relu(W1 x + b1)^2 + b2  (squared ReLU: Primer, So et al. 2021)
swiglu, geglu   FFN(x) = W2 (act(W_gate x) * (W_up x)), act = SiLU or GELU (Shazeer, 2020)
geglu_tanh      the same with GELU's tanh approximation (T5 v1.1's "gated-gelu")

Hook points (model/hooks.py), (B, T, F) each: hook_pre (W1 x + b1, or W_gate x), hook_pre_linear
(W_up x, gated kinds only) and hook_post (the hidden activations that W2 reads).
"""

from functools import partial

import torch
from torch import nn

from glassformer.model.hooks import HookPoint


class ReLUSquared(nn.Module):
    """relu(x)^2: 0 below zero, x^2 above (found by Primer's search; Nemotron, nanochat)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x).square()


ACTIVATIONS = {"relu": nn.ReLU, "relu2": ReLUSquared, "gelu": nn.GELU,
               "gelu_tanh": partial(nn.GELU, approximate="tanh"),
               "swiglu": nn.SiLU, "geglu": nn.GELU,
               "geglu_tanh": partial(nn.GELU, approximate="tanh")}


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, cfg.hidden, bias=cfg.bias)  # W1, or W_gate when gated
        self.up = nn.Linear(cfg.n_embd, cfg.hidden, bias=cfg.bias) if cfg.gated else None
        self.act = ACTIVATIONS[cfg.activation]()
        self.proj = nn.Linear(cfg.hidden, cfg.n_embd, bias=cfg.bias)  # W2
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()
        self.hook_pre_linear = HookPoint() if cfg.gated else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.hook_pre(self.fc(x)))  # (B, T, C) -> (B, T, F)
        if self.up is not None:
            h = h * self.hook_pre_linear(self.up(x))  # the gate scales the up projection, (B, T, F)
        return self.proj(self.hook_post(h))  # (B, T, F) -> (B, T, C)
