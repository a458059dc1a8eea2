"""Quantized decoding: a trained model's linear layers with 8-bit weights, for the CPU.

Decoding one token at batch 1 reads every weight once, so it is bound by memory bandwidth:
weights of 1 byte instead of 4 are read ~4x sooner. Each output channel o of a weight W (F, C)
is stored as int8 with its own scale,

    s_o = max_c |W[o, c]| / 127,    Q[o, c] = round(W[o, c] / s_o)  in [-127, 127],

and y = x W^T + b is computed by PyTorch's x86 (fbgemm) dynamic int8 kernel: x is quantized per
call (per tensor, from its own range), the product is accumulated in int32 and scaled back to
fp32. Only inference: the int8 weights have no gradient. The token embedding stays fp32 (a
lookup reads one row per token); a tied LM head gets its own int8 copy.

    model = quantize(model, "int8")   # in place; the model's outputs move by ~1% of their scale
"""

from __future__ import annotations

import warnings
from typing import get_args

import torch
from torch import nn

from glassformer.config import Quantization
from glassformer.errors import GlassformerError


class Int8Linear(nn.Module):
    """nn.Linear with int8 weights per output channel, fp32 in and out."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        W = linear.weight.detach().float()  # (F, C)
        scale = (W.abs().amax(dim=1) / 127).clamp(min=1e-12)  # (F,) one per output channel
        bias = None if linear.bias is None else linear.bias.detach().float()
        with warnings.catch_warnings():  # PyTorch marks its quantized tensor type as deprecated
            warnings.simplefilter("ignore", UserWarning)
            zero = torch.zeros_like(scale, dtype=torch.long)
            Q = torch.quantize_per_channel(W, scale.double(), zero, axis=0, dtype=torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(Q, bias)  # fbgemm's layout

    def forward(self, x):
        """x (..., C) fp32 -> (..., F) fp32."""
        # reduce_range: 7-bit activations, which x86's int8 dot product (VPMADDUBSW) needs to
        # add pairs of products without saturating int16
        return torch.ops.quantized.linear_dynamic(x, self.packed, True)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def quantize(model, kind: str):
    """`model` (in eval mode) with its weights as `kind` says: "int8" (every nn.Linear, see
    Int8Linear), "bf16" (every weight in bfloat16; activations too), or "none"."""
    if kind == "none":
        return model
    if kind == "bf16":
        return model.to(torch.bfloat16)
    if kind != "int8":
        raise GlassformerError(f"quantization {kind!r} is not one of "
                               f"{', '.join(get_args(Quantization))}")
    if model.cfg.family != "gpt":
        raise GlassformerError(f"int8 quantization is for decoding a gpt model; this one is a "
                               f"{model.cfg.family} (use bf16, or none)")
    if not {"x86", "fbgemm"} & set(torch.backends.quantized.supported_engines):
        raise GlassformerError("this PyTorch build has no int8 CPU kernels (fbgemm); use bf16")
    if next(model.parameters()).device.type != "cpu":
        raise GlassformerError("int8 quantization runs on the CPU; load the model with "
                               "--device cpu, or use bf16 on a GPU")
    model.eval()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, Int8Linear(child))
    return model
