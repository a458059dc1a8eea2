"""T5's relative position bias against Hugging Face's T5Attention (bucketing and the (H, T, S)
bias, encoder and decoder, with a KV-cache offset), wired into attention, and a GPT with
position="t5": parameter count, causality, KV cache, padding, SDPA = math, save/load, training."""


import pytest
import torch
from safetensors.torch import load_model, save_model
from transformers import T5Config
from transformers.models.t5.modeling_t5 import T5Attention

from glassformer.config import ModelConfig
from glassformer.errors import ConfigError
from glassformer.inspect.params import closed_form_count
from glassformer.model import count_parameters
from glassformer.model.attention import SelfAttention, attend_math
from glassformer.model.gpt import GPT
from glassformer.model.masks import causal_mask
from glassformer.model.relative_bias import RelativeBias, relative_buckets
from tests.helpers import KERNELS

SIZES = [(32, 128), (16, 64), (8, 20), (10, 11)]  # (num_buckets, max_distance)


@pytest.mark.parametrize("bidirectional", [True, False], ids=["encoder", "decoder"])
@pytest.mark.parametrize("num_buckets,max_distance", SIZES)
def test_buckets_equal_t5(bidirectional, num_buckets, max_distance):
    rel = torch.arange(-300, 301)[:, None] + torch.arange(0, 3)[None, :]  # (601, 3) key - query
    expected = T5Attention._relative_position_bucket(rel, bidirectional, num_buckets, max_distance)
    ours = relative_buckets(rel, bidirectional, num_buckets, max_distance)
    assert torch.equal(ours, expected)
    assert ours.min() >= 0 and ours.max() < num_buckets


def test_buckets_by_hand():
    # causal, 8 buckets: distances 0-3 exact, then 4 + floor(log(n/4) / log(16/4) * 4), at most 7
    past = -torch.arange(14)
    expected = [0, 1, 2, 3, 4, 4, 5, 5, 6, 6, 6, 6, 7, 7]
    assert relative_buckets(past, False, 8, 16).tolist() == expected
    assert (relative_buckets(torch.arange(1, 5), False, 8, 16) == 0).all()  # the future: bucket 0
    # bidirectional: 4 buckets per side, keys after the query in 4..7
    rel = torch.tensor([-2, -1, 0, 1, 2])
    assert relative_buckets(rel, True, 8, 16).tolist() == [2, 1, 0, 5, 6]


def t5_pair(num_buckets, max_distance, causal, n_head=4):
    """Our RelativeBias and a Hugging Face T5Attention holding the same (buckets, H) table."""
    cfg = ModelConfig(n_head=n_head, n_embd=4 * n_head, position="t5", rel_buckets=num_buckets,
                      rel_max_distance=max_distance)
    torch.manual_seed(0)
    ours = RelativeBias(cfg, bidirectional=not causal)
    table = torch.randn(num_buckets, n_head)
    hf_cfg = T5Config(d_model=cfg.n_embd, d_kv=cfg.head_dim, num_heads=n_head,
                      relative_attention_num_buckets=num_buckets,
                      relative_attention_max_distance=max_distance, is_decoder=causal)
    hf = T5Attention(hf_cfg, has_relative_attention_bias=True, layer_idx=0)
    with torch.no_grad():
        ours.table.weight.copy_(table)
        hf.relative_attention_bias.weight.copy_(table)
    return ours, hf


@pytest.mark.parametrize("causal", [True, False], ids=["decoder", "encoder"])
@pytest.mark.parametrize("num_buckets,max_distance", SIZES)
@pytest.mark.parametrize("T,S", [(20, 20), (3, 20), (1, 200), (150, 150)])
def test_bias_equals_t5_compute_bias(causal, num_buckets, max_distance, T, S):
    """T < S: the last T of S positions query all S keys, HF's `past_seen_tokens` = S - T."""
    ours, hf = t5_pair(num_buckets, max_distance, causal)
    with torch.no_grad():
        expected = hf.compute_bias(T, S, past_seen_tokens=S - T)[0]  # (H, T, S)
        torch.testing.assert_close(ours(T, S), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("causal", [True, False], ids=["decoder", "encoder"])
def test_attention_adds_t5_bias_to_the_scores(kernel, causal):
    """SelfAttention equals softmax(QK^T/sqrt(D) + HF's bias, masked when causal) V by hand."""
    cfg = ModelConfig(n_head=2, n_embd=16, position="t5", rel_buckets=8, rel_max_distance=6,
                      kernel=kernel)
    torch.manual_seed(0)
    attn = SelfAttention(cfg, causal=causal).eval()
    assert attn.relative.bidirectional == (not causal)
    with torch.no_grad():
        attn.relative.table.weight.normal_()
        _, hf = t5_pair(8, 6, causal, n_head=2)
        hf.relative_attention_bias.weight.copy_(attn.relative.table.weight)
        x = torch.randn(2, 11, 16)
        bias = hf.compute_bias(11, 11)[0]  # (H, T, S)
        if causal:
            bias = bias.masked_fill(~causal_mask(11, 11), float("-inf"))
        q, k, v = attn.qkv(x).split(16, dim=2)
        q, k, v = (t.view(2, 11, 2, 8).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        y, _ = attend_math(q, k, v, bias)
        expected = attn.proj(y.transpose(1, 2).reshape(2, 11, 16))
        torch.testing.assert_close(attn(x), expected, atol=1e-6, rtol=0)


# --- a GPT with position="t5" --------------------------------------------------------------------

VOCAB = 13


def build(**kw) -> GPT:
    """A tiny GPT whose biases, gains and relative tables are large enough to matter."""
    cfg = ModelConfig(**{**dict(vocab_size=VOCAB, block_size=24, n_layer=2, n_head=2, n_embd=16,
                                position="t5", rel_buckets=8, rel_max_distance=12), **kw})
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
            elif "relative" in name:
                p.normal_()
    return model


@pytest.mark.parametrize("n_kv_head", [None, 1])
@pytest.mark.parametrize("norm_placement", ["pre", "post"])
def test_gpt_t5_counts_its_tables_once_per_layer(n_kv_head, norm_placement):
    model = build(n_kv_head=n_kv_head, norm_placement=norm_placement)
    assert model.embed.positions is None  # order enters only through the score bias
    assert all(b.attn.relative.table.weight.shape == (8, 2) for b in model.blocks)
    assert count_parameters(model) == closed_form_count(model.cfg)
    assert closed_form_count(model.cfg) - closed_form_count(
        ModelConfig(**{**model.cfg.__dict__, "position": "none"})) == 2 * 8 * 2  # layers*buckets*H


def test_shared_table_is_one_module_owned_by_the_first_layer(tmp_path):
    """rel_shared (T5's layout): every layer reads the first layer's table; one table's
    parameters in the count, every layer's name in the state dict, a save/load keeps it one."""
    model = build(n_layer=3, rel_shared=True)
    first = model.blocks[0].attn.relative
    assert all(b.attn.relative is first for b in model.blocks)
    assert count_parameters(model) == closed_form_count(model.cfg)
    assert count_parameters(build(n_layer=3)) - count_parameters(model) == 2 * 8 * 2  # 2 tables
    assert [k for k in model.state_dict() if "relative" in k] == [
        f"blocks.{i}.attn.relative.table.weight" for i in range(3)]
    ids = torch.randint(VOCAB, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before, _ = model(ids)
        # the same numbers as a model whose every layer holds its own copy of the first table
        manual = build(n_layer=3)
        for block in manual.blocks:
            block.attn.relative.table.weight.copy_(first.table.weight)
        manual.load_state_dict({k: v for k, v in model.state_dict().items()
                                if "relative" not in k}, strict=False)
        torch.testing.assert_close(manual(ids)[0], before, atol=1e-6, rtol=0)
    save_model(model, str(tmp_path / "model.safetensors"))
    loaded = build(n_layer=3, rel_shared=True)
    load_model(loaded, str(tmp_path / "model.safetensors"))
    assert all(b.attn.relative is loaded.blocks[0].attn.relative for b in loaded.blocks)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids)[0], before, atol=0, rtol=0)


def test_shared_table_needs_t5_positions():
    with pytest.raises(ConfigError, match="rel_shared.*needs position='t5'"):
        ModelConfig(vocab_size=VOCAB, n_head=2, n_embd=16, position="rope", rel_shared=True)


@pytest.mark.parametrize("n_kv_head", [None, 1])
def test_gpt_t5_causal_cached_and_sdpa_equals_math(n_kv_head, check_causal,
                                                   check_cached_decoding):
    model = build(n_kv_head=n_kv_head)
    math_model = build(n_kv_head=n_kv_head, kernel="math")
    math_model.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    ids = torch.randint(VOCAB, (2, 24))  # past rel_max_distance = 12: the last bucket is used
    with torch.no_grad():
        full, _ = model(ids)
        torch.testing.assert_close(math_model(ids)[0], full, atol=1e-5, rtol=0)
    for m in (model, math_model):
        check_causal(m, ids)
        check_cached_decoding(m, ids)
    with torch.no_grad():
        for block in model.blocks:  # the bias is what carries the order
            block.attn.relative.table.weight.zero_()
        assert (model(ids)[0] - full).abs().max() > 1e-3


@pytest.mark.parametrize("kernel", KERNELS)
def test_gpt_t5_left_padding_does_not_change_real_logits(kernel):
    model = build(kernel=kernel)
    ids = torch.randint(VOCAB, (1, 9), generator=torch.Generator().manual_seed(1))
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), ids], dim=1)  # 4 pads on the left
    valid = torch.tensor([[False] * 4 + [True] * 9])
    with torch.no_grad():
        alone, _ = model(ids)
        batched, _ = model(padded, key_valid=valid)
    torch.testing.assert_close(batched[:, 4:], alone, atol=1e-5, rtol=0)


def test_gpt_t5_safetensors_round_trip(tmp_path):
    model = build()
    save_model(model, str(tmp_path / "model.safetensors"))
    loaded = build()
    with torch.no_grad():
        for block in loaded.blocks:
            block.attn.relative.table.weight.zero_()
    load_model(loaded, str(tmp_path / "model.safetensors"))
    ids = torch.randint(VOCAB, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids)[0], model(ids)[0], atol=0, rtol=0)


def test_gpt_t5_short_training_learns_from_context(check_learns_from_context):
    """Order is known to the model only through the bias (no position vectors)."""
    check_learns_from_context(position="t5", rel_buckets=16, rel_max_distance=16)
