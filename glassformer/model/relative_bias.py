"""T5's relative position bias (Raffel et al., 2020): no position vectors at all; head h adds a
learned scalar b[bucket(j - i), h] to the score of query i for key j. Nearby distances get a bucket
each, farther ones share logarithmically wider buckets, and from max_distance on all share the last.

Encoders are bidirectional (keys before and after the query get separate buckets); decoders are
causal and bucket only the past. By default each attention layer owns its own table (n_buckets * H
parameters per layer), so a layer is self-contained; with rel_shared (T5's layout) the first layer
of each stack owns the one table and the stack hands the same module to its other layers
(model/stack.py): one set of parameters, as many names in the state dict as layers.
"""

import math

import torch
from torch import nn


def relative_buckets(relative_position: torch.Tensor, bidirectional: bool, num_buckets: int,
                     max_distance: int) -> torch.Tensor:
    """Bucket ids in [0, num_buckets) for relative positions key - query (any shape, integer).

    bidirectional: half the buckets for keys after the query (j > i), half for the rest, with
    n = |j - i|; causal: all buckets for the past, n = max(i - j, 0) (future keys are masked).
    With N buckets per direction and E = N // 2:
        bucket(n) = n                                                   if n < E
                  = min(E + floor(log(n / E) / log(max_distance / E) * (N - E)), N - 1)  otherwise
    so n = 0 .. E-1 are exact and E .. max_distance are log-spaced. The same numbers as Mesh
    TensorFlow's and Hugging Face's T5 (the same float32 operations in the same order).
    """
    offset = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        offset = (relative_position > 0).long() * num_buckets  # keys after the query: upper half
        n = relative_position.abs()
    else:
        n = (-relative_position).clamp(min=0)  # distance into the past
    exact = num_buckets // 2
    # clamp: log(0) would be -inf where the exact branch is taken anyway
    scaled = (torch.log(n.clamp(min=exact).float() / exact) / math.log(max_distance / exact)
              * (num_buckets - exact))
    large = (exact + scaled.long()).clamp(max=num_buckets - 1)
    return offset + torch.where(n < exact, n, large)


class RelativeBias(nn.Module):
    """A learned table of one bias per (bucket, head), looked up by relative distance."""

    def __init__(self, cfg, bidirectional: bool):
        super().__init__()
        self.table = nn.Embedding(cfg.rel_buckets, cfg.n_head)  # (buckets, H)
        self.bidirectional = bidirectional
        self.max_distance = cfg.rel_max_distance

    def forward(self, T: int, S: int) -> torch.Tensor:
        """The (H, T, S) bias for T queries, the last of S positions, over S keys."""
        device = self.table.weight.device
        q_pos = torch.arange(S - T, S, device=device)[:, None]  # (T, 1)
        k_pos = torch.arange(S, device=device)[None, :]  # (1, S)
        buckets = relative_buckets(k_pos - q_pos, self.bidirectional,
                                   self.table.num_embeddings, self.max_distance)  # (T, S)
        return self.table(buckets).permute(2, 0, 1)  # (T, S, H) -> (H, T, S)
