"""Quantized decoding: a trained model's linear layers with 8-bit weights and activations, for the
CPU.

Decoding one token at batch 1 reads every weight once, so it is bound by memory bandwidth:
weights of 1 byte instead of 4 are read ~4x sooner. Each output channel o of a weight W (F, C)
is stored as int8 with its own scale (L = 127 levels a side, or 63 on a CPU without VNNI, below),

    s_o = max_c |W[o, c]| / L,    Q[o, c] = round(W[o, c] / s_o)  in [-L, L],

and each input row x (one token's C features) is quantized when it comes, with its own range:

    a = (max(x, 0) - min(x, 0)) / 255,  z = round(-min(x, 0) / a),  q = round(x / a) + z  in [0, 255]

so y_o = a s_o sum_c (q_c - z) Q[o, c] is an integer dot product (int32) scaled back to fp32.
One scale per token matters: a real model's first token carries activations hundreds of times
larger than the others' (an "attention sink"), and one scale for a whole prompt would leave the
other tokens a few levels.

Outlier channels: a few input channels c of every token are far larger than the rest, so they
set the token's range and the other channels get few levels. SmoothQuant (Xiao et al., 2022)
moves that range into the weights, which are quantized per output channel and take it easily:
x W^T = (x / m) (W m)^T for any per-channel m > 0, with

    m_c = sqrt(max |x_c| / max_o |W[o, c]|)   (max |x_c| measured on calibration tokens),

and x / m folded into what makes x: the RMSNorm gain before q/k/v and before the MLP's gate and
up projections, the up projection's rows before the down projection (x there is act(gate) * up),
and the final norm before the head. Only `quantize`'s int8 does this, in place; the model's
outputs in fp32 do not change (up to rounding).

What smoothing leaves, LLM.int8()'s decomposition (Dettmers et al., 2022) takes: the OUTLIERS
input channels of each layer with the largest |x_c| on the calibration text (after smoothing)
stay fp32, x W^T = x_int8 W_int8^T + x_k W_k^T, and leave the other channels' range to them.

Measured on SmolLM2-135M-Instruct, teacher-forced over the first 4,096 tokens of the README
(fp32 perplexity 57.72, then 32.36 for the last two rows, the README having changed), the share
of positions whose top-1 token is fp32's and the perplexity:

    activations per tensor, 7-bit (fbgemm's default)   40.3%   +203%
    per token, 7-bit                                   80.8%   +8.8%
    per token, 8-bit                                   89.1%   +1.9%
    per token, 8-bit, smoothed                         93.4%   +1.33%
    ... and 8 channels per layer in fp32 (this module)  96.0%   +0.58%

(the first three by simulating the roundings in fp32; the last two with int8 kernels, on a CPU
with AVX-512 VNNI; 16 and 32 channels gave 96.1% +0.94% and 96.3% +0.66%, within the
measurement's noise of 8).

One kernel, PyTorch's x86 (fbgemm) dynamic int8 Linear, for any number of rows: it quantizes
its input over one range, the row's own when there is one row (decoding at batch 1); several rows
(a prompt, a batch) are first mapped each onto [-1, 1] (x' = (x - mid) / half, the row's middle
and half-width), so that the one range is every row's, and W x = half W x' + mid W 1 undoes it.
On a CPU with VNNI (an int8 dot product into int32) the weights take 8 bits, L = 127. Without
it fbgemm adds pairs of u8 x s8 products in int16 (VPMADDUBSW), which 2 x 255 x 127 overflows, so
the weights take 7 bits, L = 63, and nothing saturates. There (AVX2, no VNNI) the table's last
row reads 93.3% and +0.66%; 8-bit weights with 7-bit activations gave 91.8% and +2.59%, and 8
bits of both, saturating, 92.7% and +1.93%. The kernel is ~4x faster than fp32 on one row of a
576x1536 weight (58 against 260 us on that CPU, 2 threads; torch._int_mm took 690 there, and
torch._weight_int8pack_mm 520). Only inference: the int8 weights have no gradient. The token
embedding stays fp32 (a lookup reads one row per token); a tied LM head gets its own int8 copy.

    model = quantize(model, "int8", calibration_ids(tokenizer))   # in place
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import get_args

import torch
from torch import nn

from glassformer.config import Quantization
from glassformer.errors import GlassformerError
from glassformer.model.mlp import MLP
from glassformer.tokenizers.char import UnknownCharactersError

# A few hundred tokens of ordinary text: prose, dialogue, numbers and a line of code, so that
# smoothing sees the ranges a model's inputs usually reach.
CALIBRATION_TEXT = """\
The harbour town woke slowly. By six the fishing boats were already out past the breakwater,
and the baker on Quay Street had sold his first two trays of bread. Anna opened the shutters
of the library at half past eight, as she had done every weekday for eleven years.

"Do you keep the old maps here?" asked a man in a grey coat, the first visitor of the day.
"Some of them," she said. "The oldest are in the archive upstairs. What are you looking for?"
"A chart of the coast from about 1850. My great-grandfather drew it, or so my mother said."

Tides on this coast rise and fall twice a day, about 12 hours and 25 minutes apart, and the
difference between high and low water can reach 4.5 metres in spring. Ships that arrive at the
wrong hour wait outside the bar, where the sea is shallow and the sand moves with each storm.

The question of how to measure a coastline has a surprising answer: the shorter the ruler, the
longer the coast, because a short ruler follows every bay and rock that a long one skips.

    def total(prices, tax=0.2):
        return sum(price * (1 + tax) for price in prices)

She found the chart at noon, folded inside a ledger of harbour fees, its ink faded to brown.
"""


def _has_vnni() -> bool:
    """Whether the CPU has an int8 dot product into int32 (AVX-512 VNNI or AVX-VNNI), which
    fbgemm uses; without it 8-bit weights could saturate (see the module docstring)."""
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.exists() and "vnni" in cpuinfo.read_text()


VNNI = _has_vnni()
LEVELS = 127 if VNNI else 63  # int8 weights in [-LEVELS, LEVELS]
OUTLIERS = 8  # input channels per layer kept in fp32: the largest on the calibration text


class Int8Linear(nn.Module):
    """nn.Linear with int8 weights per output channel and int8 activations per token, fp32 in
    and out; the input channels `outliers` (k,), if given, stay fp32 (see the module docstring)."""

    def __init__(self, linear: nn.Linear, outliers: torch.Tensor | None = None):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        W = linear.weight.detach().float().clone()  # (F, C)
        self.register_buffer("outliers", outliers)  # (k,) input channels kept in fp32
        self.register_buffer("outlier_weight", None if outliers is None
                             else W[:, outliers].t().contiguous())  # (k, F)
        self.register_buffer("int8_channels", None if outliers is None
                             else torch.ones(self.in_features).index_fill(0, outliers, 0.0))  # (C,)
        if outliers is not None:
            W[:, outliers] = 0  # the int8 part leaves them out of its ranges
        self.register_buffer("scale", (W.abs().amax(dim=1) / LEVELS).clamp(min=1e-12))  # (F,)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())
        with warnings.catch_warnings():  # PyTorch marks its quantized tensor type as deprecated
            warnings.simplefilter("ignore", UserWarning)
            zero = torch.zeros_like(self.scale, dtype=torch.long)
            Q = torch.quantize_per_channel(W, self.scale.double(), zero, axis=0, dtype=torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(Q, None)  # fbgemm's int8 layout
        self.register_buffer("weight_sums", Q.dequantize().sum(dim=1))  # (F,) W 1, rounded W

    def forward(self, x):
        """x (..., C) fp32 -> (..., F) fp32."""
        rows = x.reshape(-1, self.in_features)  # (N, C)
        if self.outliers is not None:
            kept = rows.index_select(1, self.outliers)  # (N, k)
            rows = rows * self.int8_channels  # (N, C), the outliers 0: out of the rows' ranges
        if rows.size(0) == 1:  # fbgemm quantizes the one row over its own range
            y = torch.ops.quantized.linear_dynamic(rows, self.packed, False)  # (1, F)
        else:  # fbgemm takes one range for all rows: map each row's range onto [-1, 1]
            lo, hi = rows.amin(dim=1, keepdim=True), rows.amax(dim=1, keepdim=True)  # (N, 1)
            mid, half = (hi + lo) / 2, ((hi - lo) / 2).clamp(min=1e-12)  # (N, 1)
            y = torch.ops.quantized.linear_dynamic((rows - mid) / half, self.packed, False)
            y = torch.addcmul(mid * self.weight_sums, y, half)  # W x = half W x' + mid W 1
        if self.outliers is not None:
            y = torch.addmm(y, kept, self.outlier_weight)  # + (N, k) @ (k, F) in fp32
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        kept = "" if self.outliers is None else f", {len(self.outliers)} input channels fp32"
        return f"in_features={self.in_features}, out_features={self.out_features}, int8{kept}"


@torch.no_grad()
def input_peaks(model, calibration: torch.Tensor) -> dict[nn.Linear, torch.Tensor]:
    """{layer: (C,) max |x_c|} of each nn.Linear's input channels over the calibration ids
    (N,), the first block_size of them in one forward; a layer given no token (an expert the
    router never chose) is left out."""
    peaks = {}

    def record(layer, args):
        if args[0].numel() == 0:
            return
        x = args[0].detach().abs().reshape(-1, args[0].size(-1)).amax(dim=0)  # (C,)
        peaks[layer] = torch.maximum(peaks[layer], x) if layer in peaks else x

    handles = [m.register_forward_pre_hook(record) for m in model.modules()
               if isinstance(m, nn.Linear)]
    try:
        model(calibration[None, :model.cfg.block_size])
    finally:
        for handle in handles:
            handle.remove()
    return peaks


@torch.no_grad()
def smooth(model, calibration: torch.Tensor) -> None:
    """SmoothQuant's per-channel migration (module docstring), in place: measure each linear
    layer's max |input| per channel on the calibration ids (N,), then fold m into the weights
    and divide it out of what feeds them. A gpt with RMSNorm and a gated MLP (Llama's layout)
    is smoothed everywhere but the attention output; other layouts only where a norm without
    bias feeds the layer."""
    peaks = input_peaks(model, calibration)  # Linear -> (C,) max |x_c|

    def migrate(sources: list[torch.Tensor | None], layers: list[nn.Linear]) -> None:
        """Multiply the layers' input channels by m and divide the `sources` that make those
        channels (a norm's gain and bias, or a linear layer's weight rows and bias) by it."""
        weight_peak = torch.stack([layer.weight.abs().amax(dim=0) for layer in layers]).amax(0)
        m = (peaks[layers[0]].clamp(min=1e-5) / weight_peak.clamp(min=1e-5)).sqrt()  # (C,)
        for source in filter(lambda t: t is not None, sources):
            source.div_(m[:, None] if source.dim() == 2 else m)  # (C, ...) row c, or (C,)
        for layer in layers:
            layer.weight.mul_(m)  # (F, C) * (C,): input channel c times m_c

    if model.cfg.norm_placement != "pre":  # a post-norm block's norms do not feed its layers
        return
    for block in model.blocks:
        attn, mlp = block.attn, block.mlp
        migrate([block.norm1.weight, getattr(block.norm1, "bias", None)], [attn.qkv])
        if isinstance(mlp, MLP):
            inputs = [mlp.fc] + ([mlp.up] if mlp.up is not None else [])
            migrate([block.norm2.weight, getattr(block.norm2, "bias", None)], inputs)
            if mlp.up is not None:  # the proj's input is act(gate) * up: scale up's rows
                migrate([mlp.up.weight, mlp.up.bias], [mlp.proj])
    if model.head.weight is model.embed.tokens.weight:  # tied: the head gets its own copy
        model.head.weight = nn.Parameter(model.head.weight.detach().clone())
    migrate([model.norm.weight, getattr(model.norm, "bias", None)], [model.head])


def calibration_ids(tokenizer) -> torch.Tensor:
    """CALIBRATION_TEXT in `tokenizer`'s ids (N,); characters a character-level tokenizer does
    not know are left out."""
    text = CALIBRATION_TEXT
    try:
        ids = tokenizer.encode(text)
    except UnknownCharactersError as e:
        unknown = set(e.unknown)
        ids = tokenizer.encode("".join(c for c in text if c not in unknown))
    return torch.tensor(ids)


def quantize(model, kind: str, calibration: torch.Tensor | None = None):
    """`model` (in eval mode) with its weights as `kind` says: "int8" (smoothed on the
    `calibration` token ids (N,), a few hundred tokens of ordinary text, then every nn.Linear
    an Int8Linear), "bf16" (every weight in bfloat16; activations too), or "none"."""
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
    if calibration is None or calibration.numel() < 2:
        raise GlassformerError("int8 quantization measures the model's activations first: "
                               "give it a few hundred token ids of ordinary text")
    model.eval()
    smooth(model, calibration)
    peaks = input_peaks(model, calibration)  # after smoothing: what the int8 rows will see
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                k = min(OUTLIERS, child.in_features // 8) if child in peaks else 0
                outliers = peaks[child].topk(k).indices.sort().values if k else None  # (k,)
                setattr(parent, name, Int8Linear(child, outliers))
    return model
