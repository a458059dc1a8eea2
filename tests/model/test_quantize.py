"""Int8 weights: each layer within the error its two roundings allow, the model's outputs close
to fp32's, and a clear refusal where the kernels do not apply."""

import copy

import pytest
import torch
from torch import nn

from glassformer.config import ModelConfig
from glassformer.errors import GlassformerError
from glassformer.model import build
from glassformer.model.quantize import Int8Linear, quantize


def test_int8_linear_is_within_its_rounding_bound():
    torch.manual_seed(0)
    linear = nn.Linear(96, 40)
    x = torch.randn(5, 96)
    W = linear.weight.detach()
    s = W.abs().amax(dim=1, keepdim=True) / 127  # (F, 1) per output channel
    Wq = (W / s).round().clamp(-127, 127) * s  # the weights the kernel holds
    want = x @ Wq.T + linear.bias.detach()
    # x is quantized per call to 7 bits over its range: each element moves by at most half a
    # step, so output o moves by at most step/2 * sum_c |Wq[o, c]| (plus float noise)
    step = (x.max().clamp(min=0) - x.min().clamp(max=0)) / 127
    bound = step / 2 * Wq.abs().sum(dim=1) + 1e-5  # (F,)
    got = Int8Linear(linear)(x)
    assert ((got - want).abs() <= bound).all()
    assert not torch.equal(got, x @ W.T + linear.bias.detach())  # it is int8, not fp32


def test_quantized_gpt_stays_close_to_fp32():
    torch.manual_seed(0)
    model = build(ModelConfig(vocab_size=100, block_size=32, n_layer=2, n_head=4,
                              n_embd=64)).eval()
    quantized = quantize(copy.deepcopy(model), "int8")
    assert not any(isinstance(m, nn.Linear) for m in quantized.modules())
    ids = torch.randint(100, (2, 16))
    with torch.no_grad():
        want, got = model(ids)[0], quantized(ids)[0]
    # ~1% of the logits' scale: two layers of 8-bit roundings, each under 1% of its input
    assert (got - want).abs().max() < 0.02 * want.abs().max()


def test_bf16_is_the_model_in_bfloat16():
    model = build(ModelConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8))
    assert all(p.dtype == torch.bfloat16 for p in quantize(model, "bf16").parameters())


def test_int8_refusals_say_what_to_use():
    bert = build(ModelConfig(family="bert", vocab_size=20, block_size=8, n_layer=1, n_head=2,
                             n_embd=8))
    with pytest.raises(GlassformerError, match="for decoding a gpt model.*use bf16"):
        quantize(bert, "int8")
    with pytest.raises(GlassformerError, match="'int4' is not one of none, int8, bf16"):
        quantize(bert, "int4")
