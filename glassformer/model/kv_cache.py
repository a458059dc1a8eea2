"""KV cache: keys and values of past positions, kept so that each new token costs one position.

Buffers are allocated once for the model's window and written by position.
Linear attention keeps running sums instead, of a fixed size.
"""

import torch


class LayerCache:
    """One attention layer's keys and values: (B, Hkv, max_len, D) buffers, filled up to `length`."""

    def __init__(self, batch: int, n_head: int, max_len: int, head_dim: int, device, dtype):
        self.k = torch.zeros(batch, n_head, max_len, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.length = 0
        self.memory_kv = None  # cross-attention: the encoder output's (k, v), computed once

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep batch rows `rows` (B',) in that order (beam search follows its beams' parents)."""
        self.k, self.v = self.k[rows], self.v[rows]
        if self.memory_kv is not None:
            self.memory_kv = tuple(t[rows] for t in self.memory_kv)

    def append(self, k: torch.Tensor, v: torch.Tensor):
        """Store the new (B, Hkv, T, D) keys/values; return all so far, (B, Hkv, S, D) each."""
        start, end = self.length, self.length + k.size(2)
        if end > self.k.size(2):
            raise ValueError(f"KV cache holds {self.k.size(2)} positions; {end} were asked for")
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


class LinearState:
    """One linear-attention layer's running sums over the `length` positions so far:
    S = sum_j phi(k_j) v_j^T (B, H, D, D) and z = sum_j phi(k_j) (B, H, D). Their size does not
    grow with the context, so each new token costs the same (model/linear_attention.py)."""

    def __init__(self, batch: int, n_head: int, head_dim: int, device, dtype):
        self.S = torch.zeros(batch, n_head, head_dim, head_dim, device=device, dtype=dtype)
        self.z = torch.zeros(batch, n_head, head_dim, device=device, dtype=dtype)
        self.length = 0

    def update(self, S: torch.Tensor, z: torch.Tensor, n: int):
        """Take the sums S (B, H, D, D) and z (B, H, D), which now cover n more positions."""
        self.S, self.z = S, z
        self.length += n


class KVCache:
    """A LayerCache per block, sized for `cfg.block_size` positions of the Hkv key/value heads
    (grouped-query attention shrinks the cache by H / Hkv); for linear attention a LinearState
    per block instead."""

    def __init__(self, cfg, batch: int, device=None, dtype=torch.float32):
        if cfg.attention == "linear":
            self.layers = [LinearState(batch, cfg.n_head, cfg.head_dim, device, dtype)
                           for _ in range(cfg.n_layer)]
        else:
            self.layers = [LayerCache(batch, cfg.kv_heads, cfg.block_size, cfg.head_dim, device,
                                      dtype) for _ in range(cfg.n_layer)]

    def reorder(self, rows: torch.Tensor) -> None:
        for layer in self.layers:
            layer.reorder(rows)

    @property
    def length(self) -> int:
        """Positions already cached (the absolute position of the next token)."""
        return self.layers[0].length
