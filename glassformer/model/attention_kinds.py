"""The attention algorithms a config can name (`cfg.attention`): for each, the layer a block
builds and the state each layer keeps between decoding steps (kv_cache.KVCache holds one per
block).

algorithm  layer                                state while decoding
softmax    SelfAttention (attention.py)         LayerCache (attention.py): every past key and value,
           computed by cfg.kernel: sdpa | math  (B, Hkv, S, D) each
linear     LinearAttention                      LinearState (linear_attention.py): running sums
           (linear_attention.py)                S (B, H, D, D) and z (B, H, D), a fixed size

A layer is built as layer(cfg, causal) and called as layer(x, pad, cache, positions) with x
(B, T, C); a state is built as state.for_config(cfg, batch, device, dtype) and has `length`.
"""

from typing import NamedTuple

from glassformer.model.attention import LayerCache, SelfAttention
from glassformer.model.linear_attention import LinearAttention, LinearState


class AttentionKind(NamedTuple):
    layer: type
    state: type


ATTENTION = {
    "softmax": AttentionKind(SelfAttention, LayerCache),
    "linear": AttentionKind(LinearAttention, LinearState),
}
