"""Parity with whole reference models: Hugging Face Llama (RoPE, GQA, RMSNorm, SwiGLU) and Qwen3
(QK-norm) built from small configs with random weights, copied into a glassformer GPT by an
explicit name map; greedy generation against HF `generate`. The parts on their own are checked
in test_norm.py, test_gqa.py, test_rope.py and test_mlp_gated.py.
"""

import pytest
import torch

from glassformer.config import ModelConfig, SampleConfig
from glassformer.generate.sampler import generate
from glassformer.model.gpt import GPT
from glassformer.model.kv_cache import KVCache
from glassformer.tokenizers.char import CharTokenizer
from tests.helpers import KERNELS

transformers = pytest.importorskip("transformers")

V, C, H, D, FFN, LAYERS, WINDOW = 97, 64, 4, 16, 96, 2, 64
KV_HEADS = [pytest.param(4, id="mha"), pytest.param(2, id="gqa"), pytest.param(1, id="mqa")]
TOL = 1e-5


# --- building the pair ----------------------------------------------------------------------------


def hf_kwargs(n_kv_head: int) -> dict:
    return dict(vocab_size=V, hidden_size=C, intermediate_size=FFN, num_hidden_layers=LAYERS,
                num_attention_heads=H, num_key_value_heads=n_kv_head,
                max_position_embeddings=WINDOW, rms_norm_eps=1e-6,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                tie_word_embeddings=False, attention_bias=False,
                bos_token_id=None, eos_token_id=None, pad_token_id=None,
                attn_implementation="eager")  # the plain softmax(QK^T) path


def our_config(n_kv_head: int, kernel="sdpa", qk_norm=False) -> ModelConfig:
    return ModelConfig(vocab_size=V, block_size=WINDOW, n_layer=LAYERS, n_head=H,
                       n_kv_head=n_kv_head, n_embd=C, ffn_hidden=FFN, bias=False,
                       position="rope", rope_base=10000.0, activation="swiglu", norm="rmsnorm",
                       norm_eps=1e-6, tie_weights=False, norm_placement="pre", qk_norm=qk_norm,
                       kernel=kernel)


@torch.no_grad()


def randomize(model, std: float, seed: int = 0):
    """Every matrix N(0, std); every norm gain 1 + N(0, 0.2), so that swapping two norms in the
    name map would show (HF's init leaves them all at 1)."""
    torch.manual_seed(seed)
    for p in model.parameters():
        if p.dim() >= 2:
            p.normal_(0.0, std)
        else:
            p.copy_(1.0 + 0.2 * torch.randn_like(p))


def hf_llama(n_kv_head: int, std=0.1):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(mlp_bias=False, **hf_kwargs(n_kv_head))
    assert config.rope_parameters["rope_theta"] == 10000.0  # v5 keeps the base here
    model = LlamaForCausalLM(config).float().eval()
    assert model.config._attn_implementation == "eager"
    randomize(model, std)
    return model


def hf_qwen3(n_kv_head: int, std=0.1):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(head_dim=D, use_sliding_window=False, **hf_kwargs(n_kv_head))
    model = Qwen3ForCausalLM(config).float().eval()
    assert model.config._attn_implementation == "eager"
    randomize(model, std)
    return model


def from_hf(hf_state: dict, n_layer: int) -> dict:
    """HF Llama / Qwen3 parameter names -> glassformer GPT names. q, k and v projections are
    stacked into the fused qkv rows [W_Q (C); W_K (Hkv*D); W_V (Hkv*D)]."""
    hf = dict(hf_state)
    ours = {"embed.tokens.weight": hf.pop("model.embed_tokens.weight"),
            "norm.weight": hf.pop("model.norm.weight"),
            "head.weight": hf.pop("lm_head.weight")}
    for i in range(n_layer):
        src, dst = f"model.layers.{i}.", f"blocks.{i}."
        ours[dst + "norm1.weight"] = hf.pop(src + "input_layernorm.weight")
        ours[dst + "attn.qkv.weight"] = torch.cat([hf.pop(src + f"self_attn.{n}_proj.weight")
                                                   for n in ("q", "k", "v")], dim=0)
        ours[dst + "attn.proj.weight"] = hf.pop(src + "self_attn.o_proj.weight")
        for n in ("q_norm", "k_norm"):  # Qwen3 only
            if src + f"self_attn.{n}.weight" in hf:
                ours[dst + f"attn.{n}.weight"] = hf.pop(src + f"self_attn.{n}.weight")
        ours[dst + "norm2.weight"] = hf.pop(src + "post_attention_layernorm.weight")
        ours[dst + "mlp.fc.weight"] = hf.pop(src + "mlp.gate_proj.weight")
        ours[dst + "mlp.up.weight"] = hf.pop(src + "mlp.up_proj.weight")
        ours[dst + "mlp.proj.weight"] = hf.pop(src + "mlp.down_proj.weight")
    assert not hf, f"HF parameters the map does not place: {sorted(hf)}"
    return ours


def ours_from(hf_model, cfg: ModelConfig) -> GPT:
    model = GPT(cfg).eval()
    model.load_state_dict(from_hf(hf_model.state_dict(), cfg.n_layer), strict=True)
    return model


def random_ids(B=2, T=20, seed=1):
    torch.manual_seed(seed)
    return torch.randint(V, (B, T))


# --- 1. Llama logits --------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)


@pytest.mark.parametrize("n_kv_head", KV_HEADS)


def test_llama_logits_match(n_kv_head, kernel):
    hf = hf_llama(n_kv_head)
    ours = ours_from(hf, our_config(n_kv_head, kernel))
    ids = random_ids()
    with torch.no_grad():
        expected = hf(input_ids=ids, use_cache=False).logits
        logits, _ = ours(ids)
    assert expected.abs().max() > 1.0  # the comparison is not between two near-zero tensors
    torch.testing.assert_close(logits, expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("kernel", KERNELS)


@pytest.mark.parametrize("n_kv_head", KV_HEADS)


def test_llama_left_padded_logits_match(n_kv_head, kernel):
    """HF attention_mask + position_ids against our key_valid + positions: every real position
    of a left-padded batch has the same logits (pad positions are not compared)."""
    hf = hf_llama(n_kv_head)
    ours = ours_from(hf, our_config(n_kv_head, kernel))
    ids = random_ids()
    valid = torch.ones_like(ids, dtype=torch.bool)
    valid[0, :6] = False  # row 0: six pads on the left; row 1: none
    positions = (valid.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, T), 0 at the first real token
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=valid.long(), position_ids=positions,
                      use_cache=False).logits
        logits, _ = ours(ids, positions=positions, key_valid=valid)
        alone, _ = ours(ids[:1, 6:])  # row 0 without its pads
    torch.testing.assert_close(logits[valid], expected[valid], atol=TOL, rtol=0)
    torch.testing.assert_close(logits[0, 6:], alone[0], atol=TOL, rtol=0)


# --- 2. greedy generation ----------------------------------------------------------------------


def char_tokenizer() -> CharTokenizer:
    """97 distinct characters, so that character i is token id i."""
    return CharTokenizer([chr(33 + i) for i in range(V)])


@pytest.mark.parametrize("n_kv_head", KV_HEADS)


def test_greedy_generation_matches_hf_generate(n_kv_head):
    # std 0.5 spreads the logits far apart, so an argmax tie cannot flip between the two
    hf = hf_llama(n_kv_head, std=0.5)
    ours = ours_from(hf, our_config(n_kv_head))
    tok = char_tokenizer()
    prompts = [random_ids(1, 9, seed=3)[0], random_ids(1, 4, seed=4)[0]]
    expected = []
    for prompt in prompts:
        with torch.no_grad():
            out = hf.generate(prompt[None], attention_mask=torch.ones(1, len(prompt)),
                              do_sample=False, max_new_tokens=20, min_new_tokens=20)
        expected.append(out[0, len(prompt):].tolist())
        assert len(expected[-1]) == 20
    assert len(set(expected[0])) > 1  # not one token over and over
    # Both prompts in one left-padded batch, through the KV cache: each as HF gives it alone.
    cfg = SampleConfig(temperature=0, max_new_tokens=20)
    texts = generate(ours, tok, [tok.decode(p) for p in prompts], cfg)
    assert [tok.encode(t) for t in texts] == expected


# --- 3. Qwen3: QK-norm ---------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)


@pytest.mark.parametrize("n_kv_head", KV_HEADS)


def test_qwen3_qk_norm_logits_match(n_kv_head, kernel):
    hf = hf_qwen3(n_kv_head)
    assert hf.model.layers[0].self_attn.q_norm.weight.shape == (D,)  # a norm over each head's D
    ours = ours_from(hf, our_config(n_kv_head, kernel, qk_norm=True))
    ids = random_ids()
    with torch.no_grad():
        expected = hf(input_ids=ids, use_cache=False).logits
        logits, _ = ours(ids)
        cache = KVCache(ours.cfg, batch=2)
        prefill, _ = ours(ids[:, :12], cache=cache)
        steps = [ours(ids[:, t:t + 1], cache=cache)[0] for t in range(12, 20)]
    torch.testing.assert_close(logits, expected, atol=TOL, rtol=0)
    torch.testing.assert_close(torch.cat([prefill, *steps], dim=1), expected, atol=TOL, rtol=0)
