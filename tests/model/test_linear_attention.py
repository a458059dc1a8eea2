"""Linear attention: the running-sum forms against the (T, T) quadratic form written out, causality,
recurrent decoding against the parallel forward, padding, GQA, a state that does not grow, RoPE's
relative positions, the configs it rejects, a short training run, and cached generation."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glassformer.config import ModelConfig, SampleConfig
from glassformer.errors import ConfigError
from glassformer.generate.sampler import generate
from glassformer.inspect.params import closed_form_count
from glassformer.model import count_parameters
from glassformer.model.gpt import GPT
from tests.helpers import lively_gpt
from glassformer.tokenizers.char import CharTokenizer
from glassformer.model.kv_cache import KVCache
from glassformer.model.linear_attention import LinearAttention
from glassformer.model.masks import causal_mask

B, H, T, D = 2, 4, 7, 8
C = H * D
TOL = 1e-5
VOCAB = 23


def cfg(**kw) -> ModelConfig:
    base = dict(vocab_size=VOCAB, block_size=32, n_layer=2, n_head=2, n_embd=16,
                attention="linear")
    return ModelConfig(**{**base, **kw})


def build(seed=0, **kw) -> GPT:
    return lively_gpt(cfg(**kw), seed)


# --- the running sums against the quadratic form ------------------------------------------------

def quadratic(attn, x, positions, valid=None):
    """LinearAttention written out with its (T, T) weights: phi(q) phi(k)^T, masked (causally,
    and pad keys), each row divided by its sum, @ v. With RoPE the numerator's features are
    rotated (RoFormer), the row sums' not."""
    n, kv = attn.n_head, attn.kv_heads
    q, k, v = attn.qkv(x).split([C, kv * D, kv * D], dim=2)
    q = q.view(B, T, n, D).transpose(1, 2)  # (B, H, T, D)
    k = k.view(B, T, kv, D).transpose(1, 2).repeat_interleave(n // kv, dim=1)  # (B, H, T, D)
    v = v.view(B, T, kv, D).transpose(1, 2).repeat_interleave(n // kv, dim=1)
    if attn.q_norm is not None:
        q, k = attn.q_norm(q), attn.k_norm(k)
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    rq, rk = attn.rotary(fq, fk, positions) if attn.rotary is not None else (fq, fk)
    keep = causal_mask(T, T) if attn.causal else torch.ones(T, T, dtype=torch.bool)
    if valid is not None:
        keep = keep & valid[:, None, None, :]  # (B, 1, T, T)
    numerator = (rq @ rk.transpose(-2, -1)).masked_fill(~keep, 0.0)  # (B, H, T, T)
    row_sums = (fq @ fk.transpose(-2, -1)).masked_fill(~keep, 0.0).sum(-1, keepdim=True)
    y = (numerator / row_sums) @ v  # (B, H, T, D)
    return attn.proj(y.transpose(1, 2).reshape(B, T, C))


def layer(causal, **kw) -> LinearAttention:
    torch.manual_seed(0)
    attn = LinearAttention(cfg(n_head=H, n_embd=C, **kw), causal=causal)
    with torch.no_grad():  # nn.Linear biases start small; make them clearly non-zero
        attn.qkv.bias.normal_()
        attn.proj.bias.normal_()
    return attn.eval()


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("kw", [{}, {"n_kv_head": 2}, {"n_kv_head": 1}, {"position": "rope"},
                                {"qk_norm": True}], ids=["mha", "gqa", "mqa", "rope", "qk_norm"])
def test_running_sums_equal_the_quadratic_form(causal, kw):
    attn = layer(causal, **kw)
    torch.manual_seed(1)
    x = torch.randn(B, T, C)
    positions = torch.arange(T)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), quadratic(attn, x, positions), atol=TOL, rtol=0)


def test_pad_keys_add_nothing_bidirectional():
    attn = layer(causal=False)
    torch.manual_seed(1)
    x = torch.randn(B, T, C)
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[0, -3:] = False  # row 0 right-padded
    with torch.no_grad():
        y = attn(x, pad=valid[:, None, None, :])
        torch.testing.assert_close(y, quadratic(attn, x, torch.arange(T), valid), atol=TOL, rtol=0)
        # row 0's real tokens see only each other: as if the pads were not there
        torch.testing.assert_close(y[:1, :-3], attn(x[:1, :-3]), atol=TOL, rtol=0)


def test_rope_numerator_sees_only_relative_positions():
    """Shifting every position by the same amount leaves the output alone (RoFormer's form)."""
    attn = layer(causal=True, position="rope")
    torch.manual_seed(1)
    x = torch.randn(B, T, C)
    with torch.no_grad():
        y = attn(x, positions=torch.arange(T))
        torch.testing.assert_close(attn(x, positions=torch.arange(T) + 9), y, atol=TOL, rtol=0)
        assert (attn(x, positions=torch.arange(T) * 2) - y).abs().max() > 1e-4


# --- in a GPT --------------------------------------------------------------------------------------

MODELS = [dict(), dict(position="rope", norm="rmsnorm", activation="swiglu", n_kv_head=1),
          dict(position="sinusoidal", norm_placement="post", qk_norm=True)]
MODEL_IDS = ["learned-mha", "rope-mqa", "sinusoidal-post-qk_norm"]


@pytest.mark.parametrize("kw", MODELS, ids=MODEL_IDS)
def test_same_parameters_as_softmax_attention(kw):
    model = build(**kw)
    assert count_parameters(model) == closed_form_count(model.cfg)
    softmax = GPT(dataclasses.replace(model.cfg, attention="softmax"))
    softmax.load_state_dict(model.state_dict())  # strict: the same names and shapes


@pytest.mark.parametrize("kw", MODELS, ids=MODEL_IDS)
def test_future_tokens_never_change_past_logits(kw, check_causal):
    torch.manual_seed(1)
    check_causal(build(**kw), torch.randint(VOCAB, (2, 16)))


@pytest.mark.parametrize("kw", MODELS, ids=MODEL_IDS)
def test_recurrent_decoding_equals_the_parallel_forward_with_a_fixed_size_state(kw):
    model = build(**kw)
    torch.manual_seed(1)
    ids = torch.randint(VOCAB, (2, 20))
    with torch.no_grad():
        full, _ = model(ids)
        cache = KVCache(model.cfg, batch=2)
        parts = [model(ids[:, :5], cache=cache)[0]]  # prefill 5
        shapes = [(s.S.shape, s.z.shape) for s in cache.layers]
        hc, d = model.cfg.n_head, model.cfg.head_dim
        assert shapes == [((2, hc, d, d), (2, hc, d))] * model.cfg.n_layer
        for t in range(5, 20):  # then one token at a time
            parts.append(model(ids[:, t:t + 1], cache=cache)[0])
            assert [(s.S.shape, s.z.shape) for s in cache.layers] == shapes  # never grows
    assert cache.length == 20
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=TOL, rtol=0)


@pytest.mark.parametrize("kw", MODELS, ids=MODEL_IDS)
def test_left_pads_do_not_change_real_positions(kw):
    """Row 0 is row 1's last 9 tokens behind 7 pads, positions restarting at its first real token:
    its real logits equal those of the 9 tokens alone, in the parallel form and through a cache."""
    model = build(**kw)
    torch.manual_seed(1)
    ids = torch.randint(VOCAB, (2, 16))
    ids[0, :7] = 0
    ids[0, 7:] = ids[1, 7:]
    valid = torch.ones(2, 16, dtype=torch.bool)
    valid[0, :7] = False
    positions = (valid.cumsum(dim=1) - 1).clamp(min=0)  # (B, S)
    with torch.no_grad():
        alone, _ = model(ids[:1, 7:])
        padded, _ = model(ids, positions=positions, key_valid=valid)
        torch.testing.assert_close(padded[:1, 7:], alone, atol=TOL, rtol=0)
        assert not padded.isnan().any()  # pad queries see no key: 0, not 0 / 0
        cache = KVCache(model.cfg, batch=2)
        parts = [model(ids[:, :10], positions=positions[:, :10], key_valid=valid[:, :10],
                       cache=cache)[0]]
        parts += [model(ids[:, t:t + 1], positions=positions[:, t:t + 1],
                        key_valid=valid[:, :t + 1], cache=cache)[0] for t in range(10, 16)]
        torch.testing.assert_close(torch.cat(parts, dim=1)[:1, 7:], alone, atol=TOL, rtol=0)


@pytest.mark.parametrize("kw,field", [({"position": "alibi"}, "position"),
                                      ({"position": "t5"}, "position"),
                                      ({"window": 4}, "window")])
def test_score_biases_and_windows_are_rejected(kw, field):
    with pytest.raises(ConfigError, match=rf"ModelConfig\.{field} .*attention='linear'"):
        cfg(**kw)


# --- training and generation ---------------------------------------------------------------------

def test_short_training_learns_from_context(check_learns_from_context):
    check_learns_from_context(attention="linear")


TEXT = "hello world, the quick brown fox jumps over the lazy dog.\nA cat naps. Zebras run!\n"


@torch.no_grad()
def naive_greedy(model, ids, n_new):
    """Greedy decoding without a cache, recomputing the whole view each step; past block_size
    tokens the view is cut to its last 3/4, as the sampler does."""
    window = model.cfg.block_size
    view, out = list(ids), []
    for _ in range(n_new):
        if len(view) > window:
            view = view[-(window * 3 // 4):]
        token = int(model(torch.tensor([view]))[0][0, -1].argmax())
        out.append(token)
        view.append(token)
    return out


@pytest.mark.parametrize("n_new", [20, 60], ids=["inside-the-window", "past-the-window"])
def test_cached_greedy_generation_equals_naive_recompute(n_new):
    tok = CharTokenizer.from_text(TEXT)
    torch.manual_seed(0)
    model = GPT(cfg(vocab_size=tok.vocab_size, position="rope")).eval()
    with torch.no_grad():  # weights of std 0.3: well-separated logits, so no argmax flips
        for p in model.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.3)
    greedy = SampleConfig(max_new_tokens=n_new, temperature=0.0)
    prompts = ["quick", "the lazy dog"]
    out = generate(model, tok, prompts, greedy)  # a left-padded batch
    assert out == [tok.decode(naive_greedy(model, tok.encode(p), n_new)) for p in prompts]
    assert len(set(out)) == 2
