"""Parity with reference implementations: Hugging Face Llama (RoPE, GQA, RMSNorm, SwiGLU) and
Qwen3 (QK-norm) built from small configs with random weights, copied into a glassformer GPT by an
explicit name map; greedy generation against HF `generate`; and the new parts on their own
(RMSNorm, grouped-query attention, rotary embeddings, gated feed-forwards) against their formulas.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from glassformer.config import ModelConfig, SampleConfig
from glassformer.generate.sampler import generate
from glassformer.model.attention import LayerCache, SelfAttention
from glassformer.model.gpt import GPT
from glassformer.model.kv_cache import KVCache
from glassformer.model.mlp import MLP
from glassformer.model.norm import make_norm
from glassformer.model.rope import Rotary, rotate_half
from glassformer.tokenizers.char import CharTokenizer
from tests.helpers import KERNELS

transformers = pytest.importorskip("transformers")
from transformers.models.llama.modeling_llama import (  # noqa: E402
    LlamaRMSNorm,
    LlamaRotaryEmbedding,
    apply_rotary_pos_emb,
)

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


# --- 4. RMSNorm ----------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [1.0, 1e-3], ids=["unit", "tiny-eps-matters"])
def test_rmsnorm_matches_formula_torch_and_hf(scale):
    eps = 1e-5
    cfg = ModelConfig(vocab_size=5, block_size=4, n_layer=1, n_head=2, n_embd=24, norm="rmsnorm",
                      norm_eps=eps)
    norm = make_norm(cfg)
    torch.manual_seed(0)
    gamma = 1.0 + 0.5 * torch.randn(24)
    x = scale * (torch.randn(3, 5, 24) + 0.7)  # a non-zero mean: RMSNorm must not centre it
    with torch.no_grad():
        norm.weight.copy_(gamma)
    assert [n for n, _ in norm.named_parameters()] == ["weight"]  # no beta
    formula = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * gamma
    reference = torch.nn.RMSNorm(24, eps=eps)
    hf = LlamaRMSNorm(24, eps=eps)
    with torch.no_grad():
        reference.weight.copy_(gamma)
        hf.weight.copy_(gamma)
        got = norm(x)
        torch.testing.assert_close(got, formula, atol=1e-6, rtol=0)
        torch.testing.assert_close(got, reference(x), atol=1e-6, rtol=0)
        torch.testing.assert_close(got, hf(x), atol=1e-6, rtol=0)
    if scale < 1:  # mean(x^2) ~ 1e-6 < eps: eps visibly shrinks the output
        assert (got - x / x.pow(2).mean(-1, keepdim=True).sqrt() * gamma).abs().max() > 0.1


def test_make_norm_over_head_dim():
    cfg = ModelConfig(vocab_size=5, block_size=4, n_layer=1, n_head=2, n_embd=24, norm="rmsnorm")
    assert make_norm(cfg, 12).weight.shape == (12,)


# --- 5. GQA is MHA with repeated kv heads -----------------------------------------------------

def gqa_pair(kernel: str, position: str, qk_norm: bool):
    """A SelfAttention with H=4 query heads and Hkv=2 kv heads, and an MHA (Hkv=4) whose K and V
    weight rows repeat each kv head j as heads 2j and 2j+1."""
    Hq, Hkv, Dh = 4, 2, 8
    base = dict(vocab_size=5, block_size=16, n_layer=1, n_head=Hq, n_embd=Hq * Dh, bias=True,
                position=position, norm="rmsnorm", qk_norm=qk_norm, kernel=kernel)
    torch.manual_seed(0)
    gqa = SelfAttention(ModelConfig(n_kv_head=Hkv, **base)).eval()
    mha = SelfAttention(ModelConfig(n_kv_head=Hq, **base)).eval()
    Cm = Hq * Dh
    with torch.no_grad():
        for name, p in gqa.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.2)
            else:  # QK-norm gains
                p.copy_(1.0 + 0.2 * torch.randn_like(p))

        def expand(rows):  # (Hkv*D, ...) -> (H*D, ...): kv head j becomes heads 2j and 2j+1
            per_head = rows.view(Hkv, Dh, *rows.shape[1:])  # (Hkv, D, ...)
            return per_head.repeat_interleave(Hq // Hkv, dim=0).flatten(0, 1)  # (H*D, ...)

        for name in ("weight", "bias"):
            w = getattr(gqa.qkv, name)
            q, k, v = w.split([Cm, Hkv * Dh, Hkv * Dh], dim=0)
            getattr(mha.qkv, name).copy_(torch.cat([q, expand(k), expand(v)], dim=0))
        mha.proj.load_state_dict(gqa.proj.state_dict())
        if qk_norm:
            mha.q_norm.load_state_dict(gqa.q_norm.state_dict())
            mha.k_norm.load_state_dict(gqa.k_norm.state_dict())
    return gqa, mha


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("position,qk_norm", [("none", False), ("rope", False), ("rope", True)])
def test_gqa_equals_mha_with_repeated_kv_heads(kernel, position, qk_norm):
    gqa, mha = gqa_pair(kernel, position, qk_norm)
    torch.manual_seed(1)
    x = torch.randn(2, 12, 32)
    with torch.no_grad():
        full = gqa(x)
        torch.testing.assert_close(full, mha(x), atol=1e-5, rtol=0)
        outputs = {}
        for name, attn in (("gqa", gqa), ("mha", mha)):
            cache = LayerCache(2, attn.n_kv_head, 16, 8, None, torch.float32)
            parts = [attn(x[:, :5], cache=cache)]
            parts += [attn(x[:, t:t + 1], cache=cache) for t in range(5, 12)]
            assert cache.k.shape == (2, attn.n_kv_head, 16, 8)
            outputs[name] = torch.cat(parts, dim=1)
    torch.testing.assert_close(outputs["gqa"], full, atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs["mha"], full, atol=1e-5, rtol=0)
    other = gqa_pair(kernel, position, qk_norm)[0]  # the grouping is what makes them agree:
    with torch.no_grad():  # kv heads in the wrong order give different outputs
        other.qkv.weight[32:40], other.qkv.weight[40:48] = (other.qkv.weight[40:48].clone(),
                                                            other.qkv.weight[32:40].clone())
        assert (other(x) - full).abs().max() > 1e-3


@pytest.mark.parametrize("n_kv_head,expected", [(None, 4), (4, 4), (2, 2), (1, 1)])
def test_kv_cache_holds_kv_heads(n_kv_head, expected):
    cfg = ModelConfig(vocab_size=5, block_size=16, n_layer=3, n_head=4, n_kv_head=n_kv_head,
                      n_embd=32)
    cache = KVCache(cfg, batch=2)
    assert len(cache.layers) == 3
    for layer in cache.layers:
        assert layer.k.shape == layer.v.shape == (2, expected, 16, 8)
    assert GPT(cfg).blocks[0].attn.qkv.weight.shape == (32 + 2 * expected * 8, 32)


# --- 6. RoPE -------------------------------------------------------------------------------

def rotated(rotary, x, position: int):
    """x (1, 1, 1, D) rotated to `position`."""
    return rotary(x, x, torch.tensor([position]))[0]


def test_rope_scores_depend_only_on_distance():
    rotary = Rotary(16, 10000.0)
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(m, n):
        return (rotated(rotary, q, m) * rotated(rotary, k, n)).sum().item()

    assert score(5, 2) == pytest.approx(score(13, 10), abs=1e-5)
    assert score(5, 2) == pytest.approx(score(3, 0), abs=1e-5)
    assert abs(score(5, 2) - score(5, 3)) > 1e-2  # and it does depend on the distance
    assert abs(score(5, 2) - (q * k).sum().item()) > 1e-2


def test_rope_position_zero_is_identity_and_norms_are_kept():
    rotary = Rotary(16, 10000.0)
    torch.manual_seed(0)
    q, k = torch.randn(2, 4, 7, 16), torch.randn(2, 2, 7, 16)
    rq, rk = rotary(q, k, torch.zeros(7, dtype=torch.long))
    assert torch.equal(rq, q) and torch.equal(rk, k)
    rq, rk = rotary(q, k, torch.arange(7))
    torch.testing.assert_close(rq.norm(dim=-1), q.norm(dim=-1))  # a rotation
    torch.testing.assert_close(rq[:, :, 0], q[:, :, 0])  # position 0 again
    assert (rq[:, :, 1:] - q[:, :, 1:]).abs().max() > 1e-2


def test_rotate_half_layout():
    x = torch.arange(8.0)
    assert rotate_half(x).tolist() == [-4.0, -5.0, -6.0, -7.0, 0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("per_row", [False, True], ids=["shared", "per-row"])
def test_rope_matches_hf(per_row):
    from transformers import LlamaConfig

    base = 500.0
    config = LlamaConfig(hidden_size=C, num_attention_heads=H, max_position_embeddings=WINDOW,
                         rope_parameters={"rope_type": "default", "rope_theta": base})
    hf_rotary = LlamaRotaryEmbedding(config)
    ours = Rotary(D, base)
    # The same expression as HF's, so the frequencies are equal to the last bit.
    torch.testing.assert_close(ours.inv_freq, hf_rotary.inv_freq, atol=0, rtol=0)
    torch.manual_seed(0)
    q, k = torch.randn(2, H, 9, D), torch.randn(2, 2, 9, D)
    if per_row:
        positions = torch.stack([torch.arange(9) + 40, torch.arange(9).flip(0)])  # (B, T)
        position_ids = positions
    else:
        positions = torch.arange(9) + 30  # (T,)
        position_ids = positions[None].expand(2, 9)
    cos, sin = hf_rotary(q, position_ids)  # (B, T, D) each
    expected_q, expected_k = apply_rotary_pos_emb(q, k, cos, sin)
    got_q, got_k = ours(q, k, positions)
    torch.testing.assert_close(got_q, expected_q, atol=1e-6, rtol=0)
    torch.testing.assert_close(got_k, expected_k, atol=1e-6, rtol=0)


# --- 7. gated feed-forwards --------------------------------------------------------------------

@pytest.mark.parametrize("activation,act", [("swiglu", F.silu),
                                            ("geglu", lambda h: F.gelu(h, approximate="none"))])
@pytest.mark.parametrize("bias", [False, True])
def test_gated_mlp_equals_formula(activation, act, bias):
    cfg = ModelConfig(vocab_size=5, block_size=4, n_layer=1, n_head=2, n_embd=16,
                      activation=activation, bias=bias, ffn_hidden=24)
    torch.manual_seed(0)
    mlp = MLP(cfg)
    with torch.no_grad():
        for p in mlp.parameters():
            p.normal_(0.0, 0.5)
    x = torch.randn(2, 3, 16)
    w_gate, w_up, w_down = mlp.fc, mlp.up, mlp.proj
    assert w_gate.weight.shape == w_up.weight.shape == (24, 16) and w_down.weight.shape == (16, 24)
    h = act(x @ w_gate.weight.T + (w_gate.bias if bias else 0)) * \
        (x @ w_up.weight.T + (w_up.bias if bias else 0))
    expected = h @ w_down.weight.T + (w_down.bias if bias else 0)
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), expected, atol=1e-5, rtol=0)


def test_geglu_uses_exact_gelu_not_tanh():
    cfg = ModelConfig(vocab_size=5, block_size=4, n_layer=1, n_head=2, n_embd=16,
                      activation="geglu")
    mlp = MLP(cfg)
    h = torch.linspace(-4, 4, 101)
    torch.testing.assert_close(mlp.act(h), F.gelu(h, approximate="none"), atol=0, rtol=0)
    assert not torch.equal(mlp.act(h), F.gelu(h, approximate="tanh"))


@pytest.mark.parametrize("n_embd,expected",
                         [(64, 176), (32, 88), (16, 48), (48, 128), (768, 2048)])
def test_gated_default_hidden_width(n_embd, expected):
    cfg = ModelConfig(vocab_size=5, block_size=4, n_layer=1, n_head=4, n_embd=n_embd,
                      activation="swiglu")
    assert cfg.hidden == expected
    assert expected == 8 * math.ceil(2 * 4 * n_embd / 3 / 8)  # 2/3 of 4C, up to a multiple of 8
    assert MLP(cfg).fc.weight.shape == (expected, n_embd)
    assert ModelConfig(**{**cfg.__dict__, "activation": "geglu"}).hidden == expected


@pytest.mark.parametrize("n_embd", range(8, 200, 4))
def test_gated_default_hidden_width_formula(n_embd):
    cfg = ModelConfig(vocab_size=5, block_size=4, n_layer=1, n_head=4, n_embd=n_embd,
                      activation="swiglu")
    from fractions import Fraction
    assert cfg.hidden == 8 * math.ceil(Fraction(8 * n_embd, 3) / 8)
    assert cfg.hidden % 8 == 0 and cfg.hidden >= 8 * n_embd / 3 > cfg.hidden - 8


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_ungated_default_hidden_width(activation):
    cfg = ModelConfig(vocab_size=5, block_size=4, n_layer=1, n_head=4, n_embd=64,
                      activation=activation)
    assert cfg.hidden == 256 and not cfg.gated
    mlp = MLP(cfg)
    assert mlp.up is None and mlp.fc.weight.shape == (256, 64)
    assert ModelConfig(**{**cfg.__dict__, "ffn_hidden": 100}).hidden == 100
