"""Mixture of experts: E feed-forwards, each token sent to k of them by a learned router
(Shazeer et al., 2017; Switch Transformer, Fedus et al., 2021; Mixtral, Jiang et al., 2024).

With N = B*T tokens x_n, router W_r (E, C) and experts FFN_1 .. FFN_E (mlp.py's MLP):
  p_n    = softmax(W_r x_n)                               router probabilities, (E,)
  K_n    = the k experts with the largest p_n
  y_n    = sum_{e in K_n} g_ne FFN_e(x_n),  g_ne = p_ne / sum_{j in K_n} p_nj
                                            (the chosen gates renormalised to sum to 1, as Mixtral)
Each expert runs only on the tokens routed to it, so a token costs k feed-forwards, not E.
With k = 1 the renormalised gate is always 1, so the router learns only from the load-balancing
loss below (Switch Transformer keeps the raw p_ne as the gate instead).

Load-balancing loss (Switch Transformer eq. 4-6, counting all k picks as Mixtral does):
  f_e  = (number of pairs (n, slot) with expert e) / (N k)    share of the N*k assignments
  P_e  = (1/N) sum_n p_ne                                     mean router probability
  aux  = E * sum_e f_e P_e
f is a count (no gradient); the gradient reaches the router through P. aux is 1 when routing is
balanced (f_e = P_e = 1/E) and grows as the router favours a few experts. Hugging Face's Mixtral
`load_balancing_loss_func` divides the counts by N, not N k, so its value is k times this one.
"""

import torch
import torch.nn.functional as F
from torch import nn

from glassformer.model.hooks import HookPoint
from glassformer.model.mlp import MLP


class MoE(nn.Module):
    """Top-k routed experts in place of one feed-forward. After each forward, `aux_loss` holds
    that batch's load-balancing loss and `counts` (E,) the tokens each expert received.
    Hook points (model/hooks.py): hook_probs, the router probabilities (N, E), and hook_chosen,
    the experts each token goes to (N, k) ids (a hook may route tokens elsewhere; the gates are
    then the chosen experts' probabilities, renormalised)."""

    def __init__(self, cfg):
        super().__init__()
        self.top_k = cfg.moe_top_k
        self.router = nn.Linear(cfg.n_embd, cfg.moe_experts, bias=False)  # W_r
        self.experts = nn.ModuleList(MLP(cfg) for _ in range(cfg.moe_experts))
        self.aux_loss = None
        self.counts = None
        self.hook_probs, self.hook_chosen = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        x = x.reshape(B * T, C)  # (N, C): routing is per token
        probs = self.hook_probs(F.softmax(self.router(x), dim=-1))  # (N, E)
        chosen = self.hook_chosen(probs.topk(self.top_k, dim=-1).indices)  # (N, k) expert ids
        gates = probs.gather(-1, chosen)  # (N, k) their probabilities
        gates = gates / gates.sum(dim=-1, keepdim=True)  # (N, k), each row sums to 1
        out = torch.zeros_like(x)  # (N, C)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(chosen == e)  # (n_e,) each: who chose e, and in which slot
            y = expert(x.index_select(0, token))  # (n_e, C) -> (n_e, C)
            out.index_add_(0, token, y * gates[token, slot].unsqueeze(-1))  # add g_ne FFN_e(x_n)
        self.counts = torch.bincount(chosen.flatten(), minlength=len(self.experts)).detach()
        self.aux_loss = load_balancing_loss(probs, self.counts)
        return out.view(B, T, C)


def load_balancing_loss(probs: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """probs (N, E) router probabilities, counts (E,) assignments per expert -> E * sum_e f_e P_e."""
    E = probs.size(-1)
    f = counts / counts.sum()  # (E,) share of the N*k assignments
    P = probs.mean(dim=0)  # (E,)
    return E * (f * P).sum()
