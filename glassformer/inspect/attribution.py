"""Direct logit attribution: how much each head and each MLP writes the target's logit directly.

In a pre-norm stack the final residual stream is a sum of what each part wrote into it:

    x_L = embeddings + sum over layers (sum over heads W_O^h z^h + b_O + mlp_out)
          (+ cross-attention's heads and bias, in an encoder-decoder's decoder)

The readout is logit = u . norm(x_L) (+ the head's bias, if any), with u the target's row of the
unembedding (or the difference of two rows, for a logit difference). The norm is not linear, but
with its scale s (the divisor, one number per position, `norm.hook_scale`) frozen at the value it
took, it is: layernorm(x) = w * (x - mean(x)) / s + b, rmsnorm(x) = w * x / s. So each part c
contributes u . (w * centre(c) / s), the norm's bias adds u . b, and the contributions sum to
the logit exactly (as TransformerLens does with its cached scale).
"""

import torch

from glassformer.errors import GlassformerError
from glassformer.inspect.lens import readout
from glassformer.model.hooks import run_with_cache


def direction(model, target: int, other: int | None = None) -> torch.Tensor:
    """u (C,): the target's row of the unembedding, minus the other's if given."""
    unembed = readout(model).unembed
    if not isinstance(unembed, torch.nn.Linear):
        raise GlassformerError("direct logit attribution needs a linear unembedding (GPT's or "
                               "the encoder-decoder's head), not BERT's masked-LM head")
    W = unembed.weight.detach()  # (V, C)
    return W[target] - W[other] if other is not None else W[target]


@torch.no_grad()
def direct_logit_attribution(model, *inputs, target: int, other: int | None = None,
                             position: int = -1) -> dict[str, float]:
    """{part: its direct contribution} to logit[target] (minus logit[other]) at `position` of
    batch element 0, for the parts "embed", "L{i}H{h}" (head h of layer i's attention),
    "L{i} attn bias", "L{i}X{h}" and "L{i} cross bias" (decoder cross-attention), "L{i} mlp",
    and "norm bias" (with the head's bias, when it has one). The values sum to the logit (or
    the logit difference)."""
    out = readout(model)
    cfg = model.cfg
    if cfg.norm_placement != "pre":
        raise GlassformerError("direct logit attribution needs a pre-norm model (post-norm "
                               "blocks normalise the residual stream after every sublayer, so "
                               "it is no sum of the parts' outputs)")
    u = direction(model, target, other)  # (C,)
    p, blocks = out.prefix, model.decoder.blocks if out.prefix else model.blocks
    sublayers = [("attn", "H")] + ([("cross", "X")] if cfg.family == "encdec" else [])
    names = [f"{p}blocks.0.hook_resid_pre", f"{p}norm.hook_scale"]
    names += [f"{p}blocks.{i}.{s}.hook_z" for i in range(cfg.n_layer) for s, _ in sublayers]
    names += [f"{p}blocks.{i}.hook_mlp_out" for i in range(cfg.n_layer)]
    _, cache = run_with_cache(model, *inputs, names=names)
    scale = cache[f"{p}norm.hook_scale"][0, position]  # (1,)
    norm = out.norm
    centre = norm.centre  # layernorm subtracts the mean; rmsnorm does not

    def read(c):  # c (C,) a part's output at `position` -> its share of the logit
        return (u * norm.weight * centre(c) / scale).sum().item()

    parts = {"embed": read(cache[f"{p}blocks.0.hook_resid_pre"][0, position])}
    D = cfg.head_dim
    for i, block in enumerate(blocks):
        for s, letter in sublayers:
            layer = getattr(block, s)
            z = cache[f"{p}blocks.{i}.{s}.hook_z"][0, :, position]  # (H, D)
            W_O = layer.proj.weight  # (C, H*D)
            for h in range(cfg.n_head):
                parts[f"L{i}{letter}{h}"] = read(W_O[:, h * D:(h + 1) * D] @ z[h])  # (C,)
            if layer.proj.bias is not None:
                parts[f"L{i} {s} bias"] = read(layer.proj.bias)
        parts[f"L{i} mlp"] = read(cache[f"{p}blocks.{i}.hook_mlp_out"][0, position])
    constant = (u * norm.bias).sum().item() if getattr(norm, "bias", None) is not None else 0.0
    if out.unembed.bias is not None:
        constant += (out.unembed.bias[target] - (out.unembed.bias[other] if other is not None
                                                 else 0)).item()
    parts["norm bias"] = constant
    return parts
