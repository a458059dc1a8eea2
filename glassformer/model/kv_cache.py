"""KV cache: what attention keeps of past positions, so that each new token costs one position.

Each block's attention layer keeps a state of the kind its algorithm needs (attention_kinds.py):
softmax attention every past key and value, in buffers written by position that grow up to the
model's window (attention.LayerCache); linear attention running sums of a fixed size
(linear_attention.LinearState). A KVCache holds one per block.
"""

import torch

from glassformer.model.attention_kinds import ATTENTION


class KVCache:
    """One decoding state per block, of the kind `cfg.attention` keeps: a LayerCache (softmax
    attention) of up to `cfg.block_size` positions of the Hkv key/value heads, so grouped-query
    attention shrinks the cache by H / Hkv; or a LinearState (linear attention)."""

    def __init__(self, cfg, batch: int, device=None, dtype=torch.float32):
        state = ATTENTION[cfg.attention].state
        self.layers = [state.for_config(cfg, batch, device, dtype) for _ in range(cfg.n_layer)]

    def reorder(self, rows: torch.Tensor) -> None:
        for layer in self.layers:
            layer.reorder(rows)

    def truncate(self, length: int) -> None:
        """Keep the first `length` positions only (a state of running sums refuses)."""
        for layer in self.layers:
            layer.truncate(length)

    @property
    def length(self) -> int:
        """Positions already cached (the absolute position of the next token)."""
        return self.layers[0].length
