"""Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs").

Softmax attention weighs key j for query t by exp(q_t . k_j / sqrt(D)); linear attention uses
phi(q_t) . phi(k_j) instead, with the positive feature map phi(x) = elu(x) + 1. The (T, S) weights
then never need to be formed, because the sum over keys can be taken first:

    out_t = sum_j (phi(q_t) . phi(k_j)) v_j / sum_j phi(q_t) . phi(k_j)
          = phi(q_t)^T S_t / phi(q_t) . z_t,   S_t = sum_j phi(k_j) v_j^T (D, D),
                                                z_t = sum_j phi(k_j) (D,)

with j over every key (non-causal) or over j <= t (causal). Causal S_t and z_t are running sums:
a cumsum over T in training, and in decoding a fixed-size state (LinearState, below) that each
new token adds to, so a token costs the same however long the context: the layer is an RNN.

Positions: learned, sinusoidal or none work unchanged. RoPE follows RoFormer (Su et al. 2021,
section 3.3): phi(q) and phi(k) are rotated in the numerator only, which then depends on relative
positions, while the denominator stays positive. ALiBi, T5 biases and sliding windows act on the
(T, S) scores, which are never formed; the config rejects them. There is no attention dropout
(there are no attention weights to drop).
"""

import torch
import torch.nn.functional as F

from glassformer.errors import GlassformerError
from glassformer.model.attention import Projections

EPS = 1e-6  # a query that sees no real key (a left pad) gets 0 / EPS = 0, not 0 / 0


def feature_map(x):
    """phi(x) = elu(x) + 1: x + 1 for x > 0, e^x below; positive everywhere."""
    return F.elu(x) + 1


class LinearAttention(Projections):
    """Multi-head linear attention with SelfAttention's projections (the same parameters, so a
    checkpoint's shapes do not change); Hkv key/value heads each serve H / Hkv query heads."""

    def __init__(self, cfg, causal: bool = True):
        super().__init__(cfg)
        self.causal = causal

    def forward(self, x, pad=None, cache=None, positions=None):
        """x (B, T, C); pad (B, 1, 1, S) True for real keys, or None; cache a LinearState or None;
        positions (T,) or (B, T) for RoPE, by default the T positions after the cached ones."""
        T, H = x.size(1), self.n_head
        q, k, v = self.split_heads(x)  # (B, H, T, D), (B, Hkv, T, D) x 2
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)  # before the feature map
        k = k.repeat_interleave(H // self.kv_heads, dim=1)  # (B, H, T, D): kv head j serves group j
        v = v.repeat_interleave(H // self.kv_heads, dim=1)  # (B, H, T, D)
        q, k = feature_map(q), feature_map(k)  # (B, H, T, D), every entry > 0
        if pad is not None:  # the new keys' columns, (B, 1, T, 1): a pad adds nothing to the sums
            k = k.masked_fill(~pad[..., -T:].transpose(2, 3), 0.0)
        q_rot, k_rot = self.rotate(q, k, positions, cache)  # the numerator's features
        S, z = self._sums(k, k_rot, v, cache)  # (B, H, T', D, D), (B, H, T', D); T' = T or 1
        numerator = (q_rot[..., None, :] @ S).squeeze(-2)  # (B, H, T, 1, D) @ S -> (B, H, T, D)
        denominator = (q * z).sum(dim=-1, keepdim=True)  # (B, H, T, 1): phi(q_t) . z_t
        return self.merge_heads(numerator / (denominator + EPS))  # (B, H, T, D) -> (B, T, C)

    def _sums(self, k, k_rot, v, cache):
        """The sums each query reads, from k, k_rot, v (B, H, T, D) and the cached state:
        S (B, H, T, D, D) and z (B, H, T, D) over keys j <= t when causal, else S (B, H, 1, D, D)
        and z (B, H, 1, D) over all keys. The cache is advanced by the T new positions."""
        if self.causal:
            S = (k_rot[..., :, None] * v[..., None, :]).cumsum(dim=2)  # sum_{j<=t} phi(k_j) v_j^T
            z = k.cumsum(dim=2)  # sum_{j<=t} phi(k_j)
        else:
            S = (k_rot.transpose(2, 3) @ v)[:, :, None]  # (B, H, D, T) @ (B, H, T, D), then T' = 1
            z = k.sum(dim=2, keepdim=True)  # (B, H, 1, D)
        if cache is not None:
            S = S + cache.S[:, :, None]  # plus the earlier positions' sums
            z = z + cache.z[:, :, None]
            cache.update(S[:, :, -1], z[:, :, -1], k.size(2))
        return S, z


class LinearState:
    """One linear-attention layer's decoding state, the running sums over the `length` positions
    so far: S = sum_j phi(k_j) v_j^T (B, H, D, D) and z = sum_j phi(k_j) (B, H, D). Their size
    does not grow with the context, so each new token costs the same. (Softmax attention keeps
    every key and value instead: attention.LayerCache.)"""

    def __init__(self, batch: int, n_head: int, head_dim: int, device, dtype):
        self.S = torch.zeros(batch, n_head, head_dim, head_dim, device=device, dtype=dtype)
        self.z = torch.zeros(batch, n_head, head_dim, device=device, dtype=dtype)
        self.length = 0

    @classmethod
    def for_config(cls, cfg, batch: int, device, dtype):
        """Sums for all H query heads (each kv head's keys are repeated over its group)."""
        return cls(batch, cfg.n_head, cfg.head_dim, device, dtype)

    def update(self, S: torch.Tensor, z: torch.Tensor, n: int):
        """Take the sums S (B, H, D, D) and z (B, H, D), which now cover n more positions."""
        self.S, self.z = S, z
        self.length += n

    def truncate(self, length: int) -> None:
        """Sums cannot forget the positions in them: refused (unless nothing is forgotten)."""
        if length < self.length:
            raise GlassformerError("linear attention's running sums cannot forget positions; "
                                   "prompt-lookup decoding needs softmax attention")
