"""Llama in and out: `transformers`' LlamaForCausalLM built from small configs (random weights;
RoPE, RMSNorm, SwiGLU, grouped-query attention) loads into our GPT with the same logits, our
Llama-shaped GPT saved as Llama loads back with every weight in place and the same logits,
greedy generation gives HF's tokens, and what Llama cannot be is refused by name."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from hf_pairs import (CHARS, TOL, V, hf_greedy, hf_llama, load_in_transformers, random_ids,
                      randomize)

from glassformer.config import ModelConfig, SampleConfig
from glassformer.errors import GlassformerError
from glassformer.generate.sampler import generate
from glassformer.interop import llama
from glassformer.interop.hf import from_pretrained, save_pretrained
from glassformer.model.gpt import GPT

pytest.importorskip("transformers")
ROPE = {"rope_type": "default", "rope_theta": 500.0}  # not the default base, so it must travel


def imported(hf, tmp_path):
    hf.save_pretrained(tmp_path / "hf")
    return from_pretrained(tmp_path / "hf")[0]


@pytest.mark.parametrize("config", [
    {"num_key_value_heads": 4},  # multi-head
    {"num_key_value_heads": 2, "rope_parameters": ROPE},  # grouped-query
    {"num_key_value_heads": 1, "tie_word_embeddings": True},  # multi-query, tied head
    {"attention_bias": True, "mlp_bias": True, "rms_norm_eps": 1e-3},
], ids=["mha", "gqa-rope500", "mqa-tied", "biases-eps"])
def test_import_gives_hf_logits(tmp_path, config):
    hf = hf_llama(**config)
    ours = imported(hf, tmp_path)
    cfg = ours.cfg
    assert (cfg.position, cfg.norm, cfg.activation) == ("rope", "rmsnorm", "swiglu")
    assert cfg.kv_heads == config.get("num_key_value_heads", 2)
    assert cfg.rope_base == config.get("rope_parameters", {}).get("rope_theta", 10000.0)
    assert cfg.bias == config.get("attention_bias", False)
    assert cfg.tie_weights == config.get("tie_word_embeddings", False)
    assert cfg.norm_eps == config.get("rms_norm_eps", 1e-6)
    ids = random_ids()
    with torch.no_grad():
        expected = hf(input_ids=ids, use_cache=False).logits
        logits, _ = ours(ids)
    assert expected.abs().max() > 1.0
    torch.testing.assert_close(logits, expected, atol=TOL, rtol=0)


def test_q_k_v_are_stacked_into_qkv_rows(tmp_path):
    hf = hf_llama(num_key_value_heads=2)
    ours = imported(hf, tmp_path)
    attn = hf.model.layers[0].self_attn
    q, k, v = ours.blocks[0].attn.qkv.weight.split([32, 16, 16])  # C, Hkv*D, Hkv*D rows
    assert torch.equal(q, attn.q_proj.weight) and torch.equal(k, attn.k_proj.weight)
    assert torch.equal(v, attn.v_proj.weight)


def test_older_config_layout_rope_theta_is_read():
    hf = hf_llama()
    config = hf.config.to_dict()
    config.pop("rope_parameters", None)
    config |= {"rope_theta": 250.0, "rope_scaling": None}  # transformers 4's spelling
    cfg, _ = llama.from_hf(config, hf.state_dict())
    assert cfg.rope_base == 250.0


@pytest.mark.parametrize("n_kv_head,tie,bias", [(2, False, False), (1, True, True)])
def test_export_loads_in_transformers_with_the_same_logits(tmp_path, n_kv_head, tie, bias):
    cfg = ModelConfig(vocab_size=V, block_size=64, n_layer=2, n_head=4, n_kv_head=n_kv_head,
                      n_embd=32, ffn_hidden=40, bias=bias, position="rope", rope_base=300.0,
                      activation="swiglu", norm="rmsnorm", norm_eps=1e-5, tie_weights=tie)
    ours = randomize(GPT(cfg), 0.1)
    assert save_pretrained(ours, tmp_path / "out") == "llama"
    hf = load_in_transformers(tmp_path / "out")
    assert type(hf).__name__ == "LlamaForCausalLM"
    assert hf.config.num_key_value_heads == n_kv_head and hf.config.intermediate_size == 40
    ids = random_ids()
    with torch.no_grad():
        expected, _ = ours(ids)
        torch.testing.assert_close(hf(input_ids=ids, use_cache=False).logits, expected,
                                   atol=TOL, rtol=0)


def test_round_trip_keeps_every_tensor(tmp_path):
    hf = hf_llama(rope_parameters=ROPE)
    save_pretrained(imported(hf, tmp_path), tmp_path / "back")
    again = load_in_transformers(tmp_path / "back")
    assert again.config.rope_parameters["rope_theta"] == 500.0
    original = hf.state_dict()
    assert again.state_dict().keys() == original.keys()
    for name, tensor in again.state_dict().items():
        assert torch.equal(tensor, original[name]), name


@pytest.mark.parametrize("n_kv_head", [4, 2, 1], ids=["mha", "gqa", "mqa"])
def test_greedy_generation_matches_hf_generate(tmp_path, n_kv_head):
    hf = hf_llama(std=0.5, num_key_value_heads=n_kv_head)  # logits far apart: no near-ties
    ours = imported(hf, tmp_path)
    prompts = [random_ids(1, 9, seed=3)[0], random_ids(1, 4, seed=4)[0]]
    expected = [hf_greedy(hf, p, 50) for p in prompts]
    assert all(len(e) == 50 and len(set(e)) > 5 for e in expected)  # not one token repeated
    cfg = SampleConfig(temperature=0, max_new_tokens=50)
    texts = generate(ours, CHARS, [CHARS.decode(p) for p in prompts], cfg)  # one padded batch
    assert [CHARS.encode(t) for t in texts] == expected


@pytest.mark.parametrize("change,message", [
    ({"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}},
     "RoPE type 'linear'"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ({"head_dim": 16}, "head_dim=16"),
    ({"attention_bias": True, "mlp_bias": False}, "mlp_bias=False"),
])
def test_unrepresentable_settings_are_refused_by_name(change, message):
    hf = hf_llama()
    config = hf.config.to_dict() | change
    with pytest.raises(GlassformerError, match=message):
        llama.from_hf(config, hf.state_dict())


def test_qwen3_style_qk_norm_weights_are_listed():
    hf = hf_llama()
    state = hf.state_dict() | {"model.layers.0.self_attn.q_norm.weight": torch.ones(8)}
    with pytest.raises(GlassformerError, match=r"no place for these weights: "
                                               r"layers\.0\.self_attn\.q_norm\.weight"):
        llama.from_hf(hf.config.to_dict(), state)


def test_missing_untied_head_is_named(tmp_path):
    hf = hf_llama()
    hf.save_pretrained(tmp_path / "hf")
    state = load_file(str(tmp_path / "hf" / "model.safetensors"))
    del state["lm_head.weight"]
    save_file(state, str(tmp_path / "hf" / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(GlassformerError, match="lacks weights the model needs: head.weight"):
        from_pretrained(tmp_path / "hf")
