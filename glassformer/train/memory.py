"""The memory of a training step, estimated from the config alone: what `glassformer inspect
memory` reports and what train() checks against the memory free before it builds the model
(train/memory_check.py).

For N parameters of b bytes each (4 for fp32, 2 for bf16), batch B and block T:
  weights      N b
  gradients    N b
  AdamW state  2 N b                   the running mean and mean square of every gradient
  activations  B T b (L (8C + f F) + 3C + 2V)   what the forward saves for the backward:
               per block and token, the block input, norm outputs, q|k|v (3C), attention output,
               residual sums (8C in all) and f tensors of the feed-forward width F (ReLU 1: its
               output; squared ReLU 2: relu's output and its square; either GELU 2: its input
               and output; SwiGLU/GeGLU 4: gate, activation, up, product); at the end the final
               norm's input and output and the head's input (3C), the logits and their
               log-softmax (2V). Softmax attention on the explicit math kernel, or on torch's
               fused one given a score bias or mask (ALiBi, T5, a window), also keeps each
               layer's (B, H, T, T) attention weights: + L H T per token.
  KV cache     2 L Hkv D b per token   keys and values of every layer, for generation
The estimated training peak is the sum of the first four (the backward starts with every
activation saved while the gradients fill in). Linear attention and mixtures of experts save
more than this (running sums, routed copies), so their estimates are low.

torch is imported only inside count_on_meta, so that `glassformer --help` answers at once.
"""

from glassformer.config import FORMS_SCORES, POSITION_ACTS_ON

BYTES = {"fp32": 4, "bf16": 2}
# Tensors of width F per token that each activation's feed-forward saves (see above)
SAVED_FFN = {"relu": 1, "relu2": 2, "gelu": 2, "gelu_tanh": 2, "swiglu": 4, "geglu": 4,
             "geglu_tanh": 4}


def count_on_meta(model_cfg) -> int:
    """The parameter count of the model `model_cfg` describes, built without memory."""
    import torch

    from glassformer.model import build, count_parameters

    with torch.device("meta"):
        return count_parameters(build(model_cfg))


def estimate(model_cfg, batch: int, block: int, dtype: str = "fp32") -> dict:
    """Bytes of each part of one training step, and of the KV cache per token, from formulas."""
    m, b = model_cfg, BYTES[dtype]
    n = count_on_meta(m)
    per_token = m.n_layer * (8 * m.n_embd + SAVED_FFN[m.activation] * m.hidden) \
        + 3 * m.n_embd + 2 * m.vocab_size
    masked = POSITION_ACTS_ON[m.position] == "scores" or m.window is not None
    if FORMS_SCORES[m.attention] and (m.kernel == "math" or masked):
        per_token += m.n_layer * m.n_head * block  # each query's row of weights, per head
    parts = {"weights": n * b, "gradients": n * b, "AdamW state": 2 * n * b,
             "activations": batch * block * per_token * b}
    return {"parameters": n, "parts": parts, "training_peak": sum(parts.values()),
            "kv_cache_per_token": 2 * m.n_layer * m.kv_heads * m.head_dim * b}


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
