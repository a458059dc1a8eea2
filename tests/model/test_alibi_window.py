"""ALiBi against its closed form and Hugging Face Bloom's ALiBi; sliding-window attention against
a dense mask built by hand."""

import pytest
import torch

from glassformer.config import ModelConfig
from glassformer.model.alibi import ALiBi, alibi_slopes
from glassformer.model.attention import SelfAttention, attend_math
from glassformer.model.gpt import GPT
from glassformer.model.masks import causal_mask
from tests.helpers import KERNELS


@pytest.mark.parametrize("n_head,expected", [
    (1, [2 ** -8]),
    (4, [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8]),
    (8, [2 ** -i for i in range(1, 9)]),
    # not a power of two: the slopes of 4 heads, then every other slope of 8 heads
    (6, [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3]),
])
def test_alibi_slopes_closed_form(n_head, expected):
    torch.testing.assert_close(alibi_slopes(n_head), torch.tensor(expected), atol=0, rtol=0)


@pytest.mark.parametrize("n_head", range(1, 17))
def test_alibi_slopes_equal_bloom(n_head):
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    bloom = build_alibi_tensor(torch.ones(1, 4, dtype=torch.long), n_head, torch.float32)
    # Bloom computes the powers in float32: equal to within a float32 rounding step
    torch.testing.assert_close(alibi_slopes(n_head), bloom[:, 0, 1], atol=0, rtol=1e-6)


def test_alibi_bias_by_hand():
    bias = ALiBi(2)(3, 3)  # slopes 2^-4, 2^-8
    distance = torch.tensor([[0.0, 1, 2], [1, 0, 1], [2, 1, 0]])
    torch.testing.assert_close(bias[0], -distance / 16)
    torch.testing.assert_close(bias[1], -distance / 256)
    # with a KV cache: the last 2 of 5 positions query all 5 keys
    torch.testing.assert_close(ALiBi(2)(2, 5)[0], -torch.tensor([[3.0, 2, 1, 0, 1],
                                                                 [4.0, 3, 2, 1, 0]]) / 16)


def test_alibi_attention_weights_equal_bloom_convention():
    """Bloom adds +m*j (key position) where we add -m*|i-j|: per causal row they differ by the
    constant m*i, which the softmax ignores, so the attention weights are the same."""
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    H, T, D = 6, 7, 4
    torch.manual_seed(0)
    q, k, v = torch.randn(1, H, T, D), torch.randn(1, H, T, D), torch.randn(1, H, T, D)
    mask = causal_mask(T, T)
    ours = ALiBi(H)(T, T).masked_fill(~mask, float("-inf"))  # (H, T, T)
    bloom = build_alibi_tensor(torch.ones(1, T, dtype=torch.long), H, torch.float32)  # (H, 1, T)
    bloom = bloom.expand(H, T, T).masked_fill(~mask, float("-inf"))
    out_ours, w_ours = attend_math(q, k, v, ours)
    out_bloom, w_bloom = attend_math(q, k, v, bloom)
    torch.testing.assert_close(w_ours, w_bloom, atol=1e-6, rtol=0)
    torch.testing.assert_close(out_ours, out_bloom, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_alibi_left_padding_does_not_change_real_logits(kernel):
    cfg = ModelConfig(vocab_size=13, block_size=16, n_layer=2, n_head=4, n_embd=16,
                      position="alibi", kernel=kernel)
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    ids = torch.randint(13, (1, 6))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)  # 3 pads on the left
    valid = torch.tensor([[False] * 3 + [True] * 6])
    positions = (valid.cumsum(1) - 1).clamp(min=0)
    alone, _ = model(ids)
    batched, _ = model(padded, key_valid=valid, positions=positions)
    torch.testing.assert_close(batched[:, 3:], alone, atol=1e-5, rtol=0)


def test_sliding_window_mask_by_hand():
    expected = torch.tensor([[1, 0, 0, 0, 0],
                             [1, 1, 0, 0, 0],
                             [0, 1, 1, 0, 0],
                             [0, 0, 1, 1, 0],
                             [0, 0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(5, 5, window=2), expected)
    assert torch.equal(causal_mask(2, 5, window=2), expected[3:])  # the KV-cache offset
    assert torch.equal(causal_mask(5, 5, window=5), causal_mask(5, 5))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("n_kv_head", [None, 1])
def test_sliding_window_attention_equals_a_dense_hand_mask(kernel, n_kv_head):
    cfg = ModelConfig(vocab_size=13, block_size=16, n_layer=1, n_head=2, n_kv_head=n_kv_head,
                      n_embd=16, window=3, kernel=kernel)
    torch.manual_seed(0)
    attn = SelfAttention(cfg).eval()
    x = torch.randn(2, 9, 16)
    i, j = torch.arange(9)[:, None], torch.arange(9)[None, :]
    hand = (j <= i) & (i - j < 3)  # (T, S): the key is not in the future and at most 2 back
    q, k, v = attn.qkv(x).split([16, attn.kv_heads * 8, attn.kv_heads * 8], dim=2)
    q = q.view(2, 9, 2, 8).transpose(1, 2)
    k = k.view(2, 9, attn.kv_heads, 8).transpose(1, 2)
    v = v.view(2, 9, attn.kv_heads, 8).transpose(1, 2)
    y, weights = attend_math(q, k, v, hand)
    expected = attn.proj(y.transpose(1, 2).reshape(2, 9, 16))
    torch.testing.assert_close(attn(x), expected, atol=1e-6, rtol=0)
    assert (weights[..., ~hand] == 0).all()


def test_sliding_window_kv_cache_past_the_window_equals_full_forward(check_cached_decoding):
    cfg = ModelConfig(vocab_size=13, block_size=24, n_layer=2, n_head=2, n_embd=16, window=4,
                      position="rope")
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    check_cached_decoding(model, torch.randint(13, (2, 20)), prefill=3)
