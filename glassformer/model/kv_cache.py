"""KV cache: keys and values of past positions, kept so that each new token costs one position.

Buffers are allocated once for the model's window and written by position. That is softmax
attention's decoding state; another attention algorithm keeps its own (linear attention: running
sums of a fixed size, linear_attention.LinearState), and model/attention_kinds.py names which.
"""

import torch


class LayerCache:
    """One attention layer's keys and values: (B, Hkv, max_len, D) buffers, filled up to `length`."""

    def __init__(self, batch: int, n_head: int, max_len: int, head_dim: int, device, dtype):
        self.k = torch.zeros(batch, n_head, max_len, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.length = 0
        self.memory_kv = None  # cross-attention: the encoder output's (k, v), computed once

    @classmethod
    def for_config(cls, cfg, batch: int, device, dtype):
        """Sized for `cfg.block_size` positions of the Hkv key/value heads (grouped-query
        attention shrinks the cache by H / Hkv)."""
        return cls(batch, cfg.kv_heads, cfg.block_size, cfg.head_dim, device, dtype)

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


class KVCache:
    """One decoding state per block, of the kind `cfg.attention` keeps: a LayerCache for softmax
    attention, a LinearState for linear attention (model/attention_kinds.py)."""

    def __init__(self, cfg, batch: int, device=None, dtype=torch.float32):
        # Imported here, not above: the table names this module's LayerCache.
        from glassformer.model.attention_kinds import ATTENTION

        state = ATTENTION[cfg.attention].state
        self.layers = [state.for_config(cfg, batch, device, dtype) for _ in range(cfg.n_layer)]

    def reorder(self, rows: torch.Tensor) -> None:
        for layer in self.layers:
            layer.reorder(rows)

    @property
    def length(self) -> int:
        """Positions already cached (the absolute position of the next token)."""
        return self.layers[0].length
