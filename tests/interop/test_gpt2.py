"""GPT-2 in and out: `transformers`' GPT2LMHeadModel built from small configs (random weights)
loads into our GPT with the same logits, our GPT saved as GPT-2 loads back into `transformers`
with every weight in place and the same logits, greedy generation gives HF's tokens, and what
GPT-2 cannot be is refused by name."""

import pytest
import torch
from hf_pairs import (CHARS, TOL, V, hf_gpt2, hf_greedy, load_in_transformers, random_ids,
                      randomize)

from glassformer.config import ModelConfig, SampleConfig
from glassformer.errors import GlassformerError
from glassformer.generate.sampler import generate
from glassformer.interop import gpt2
from glassformer.interop.hf import from_pretrained, save_pretrained
from glassformer.model.gpt import GPT

pytest.importorskip("transformers")


def imported(hf, tmp_path):
    hf.save_pretrained(tmp_path / "hf")
    model, tokenizer = from_pretrained(tmp_path / "hf")
    assert tokenizer is None  # no tokenizer.json in the directory
    return model


@pytest.mark.parametrize("config,activation", [
    ({}, "gelu_tanh"),  # GPT-2's default activation_function, "gelu_new"
    ({"activation_function": "gelu"}, "gelu"),
    ({"activation_function": "relu", "n_inner": 40}, "relu"),
    ({"tie_word_embeddings": False, "layer_norm_epsilon": 1e-3}, "gelu_tanh"),
], ids=["default", "exact-gelu", "relu-n_inner", "untied-eps"])
def test_import_gives_hf_logits(tmp_path, config, activation):
    hf = hf_gpt2(**config)
    ours = imported(hf, tmp_path)
    assert ours.cfg.activation == activation
    assert ours.cfg.tie_weights == config.get("tie_word_embeddings", True)
    assert ours.cfg.norm_eps == config.get("layer_norm_epsilon", 1e-5)
    assert ours.cfg.hidden == config.get("n_inner", 4 * 32)
    ids = random_ids()
    with torch.no_grad():
        expected = hf(input_ids=ids).logits
        logits, _ = ours(ids)
    assert expected.abs().max() > 1.0  # not two near-zero tensors
    torch.testing.assert_close(logits, expected, atol=TOL, rtol=0)


def test_conv1d_weights_are_transposed_and_qkv_keeps_its_order(tmp_path):
    hf = hf_gpt2()
    ours = imported(hf, tmp_path)
    block, theirs = ours.blocks[1], hf.transformer.h[1]
    assert theirs.attn.c_attn.weight.shape == (32, 96)  # Conv1D: (in, out)
    assert torch.equal(block.attn.qkv.weight, theirs.attn.c_attn.weight.T)  # (out, in)
    assert torch.equal(block.mlp.proj.weight, theirs.mlp.c_proj.weight.T)
    assert ours.head.weight is ours.embed.tokens.weight  # tied, as in GPT-2


def test_gelu_new_is_the_tanh_approximation():
    from transformers.activations import ACT2FN

    from glassformer.model.mlp import ACTIVATIONS

    x = torch.linspace(-5, 5, 201)
    ours = ACTIVATIONS["gelu_tanh"]()
    torch.testing.assert_close(ours(x), ACT2FN["gelu_new"](x), atol=1e-6, rtol=0)
    assert (ours(x) - torch.nn.functional.gelu(x)).abs().max() > 1e-4  # not the exact GELU


@pytest.mark.parametrize("tie", [True, False])
def test_export_loads_in_transformers_with_the_same_logits(tmp_path, tie):
    cfg = ModelConfig(vocab_size=V, block_size=64, n_layer=2, n_head=4, n_embd=32,
                      activation="gelu_tanh", tie_weights=tie, ffn_hidden=48, norm_eps=1e-4)
    ours = randomize(GPT(cfg), 0.1)
    assert save_pretrained(ours, tmp_path / "out") == "gpt2"
    hf = load_in_transformers(tmp_path / "out")
    assert type(hf).__name__ == "GPT2LMHeadModel" and hf.config.n_inner == 48
    ids = random_ids()
    with torch.no_grad():
        expected, _ = ours(ids)
        torch.testing.assert_close(hf(input_ids=ids).logits, expected, atol=TOL, rtol=0)


def test_round_trip_keeps_every_tensor(tmp_path):
    hf = hf_gpt2(tie_word_embeddings=False)
    save_pretrained(imported(hf, tmp_path), tmp_path / "back")
    again = load_in_transformers(tmp_path / "back")
    original = hf.state_dict()
    for name, tensor in again.state_dict().items():
        assert torch.equal(tensor, original[name]), name


def test_greedy_generation_matches_hf_generate(tmp_path):
    hf = hf_gpt2(std=0.5)  # logits far apart: no argmax tie can flip between the two
    ours = imported(hf, tmp_path)
    prompts = [random_ids(1, 9, seed=3)[0], random_ids(1, 4, seed=4)[0]]
    expected = [hf_greedy(hf, p, 50) for p in prompts]
    assert all(len(e) == 50 and len(set(e)) > 5 for e in expected)  # not one token repeated
    cfg = SampleConfig(temperature=0, max_new_tokens=50)
    texts = generate(ours, CHARS, [CHARS.decode(p) for p in prompts], cfg)  # one padded batch
    assert [CHARS.encode(t) for t in texts] == expected


@pytest.mark.parametrize("key,value,message", [
    ("scale_attn_by_inverse_layer_idx", True, "scale_attn_by_inverse_layer_idx=True"),
    ("activation_function", "silu", "activation_function='silu'"),
])
def test_unrepresentable_settings_are_refused_by_name(key, value, message):
    hf = hf_gpt2(**{key: value})
    with pytest.raises(GlassformerError, match=message):
        gpt2.from_hf(hf.config.to_dict(), hf.state_dict())


def test_weights_without_a_place_are_listed():
    hf = hf_gpt2()
    state = hf.state_dict() | {"score.weight": torch.zeros(2, 32), "transformer.h.0.adapter.w":
                               torch.zeros(3)}
    with pytest.raises(GlassformerError, match="no place for these weights") as err:
        gpt2.from_hf(hf.config.to_dict(), state)
    assert "score.weight" in str(err.value) and "h.0.adapter.w" in str(err.value)
    assert "wte" not in str(err.value)  # only the unplaced ones


def test_old_checkpoints_without_prefix_and_with_mask_buffers_load():
    """GPT-2 as first published: GPT2Model names (no "transformer."), causal-mask buffers, no
    lm_head (tied)."""
    hf = hf_gpt2()
    state = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items()
             if k != "lm_head.weight"}
    for i in range(2):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 96, 96))
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    cfg, ours = gpt2.from_hf(hf.config.to_dict(), state)
    assert torch.equal(ours["head.weight"], hf.lm_head.weight)
    assert torch.equal(ours["blocks.0.attn.qkv.bias"], hf.transformer.h[0].attn.c_attn.bias)
