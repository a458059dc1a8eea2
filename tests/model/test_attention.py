"""Attention: the math path against torch's SDPA and nn.MultiheadAttention, mask semantics,
attention weights, and heads kept apart by the (B, T, C) -> (B, H, T, D) reshape."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glassformer.config import ModelConfig
from glassformer.model.attention import LayerCache, SelfAttention, attend_math
from glassformer.model.masks import causal_mask, combine, padding_mask
from tests.helpers import KERNELS

B, H, T, D = 2, 3, 5, 8
C = H * D
TOL = 1e-6


def cfg(kernel="sdpa", **kw):
    return ModelConfig(vocab_size=11, block_size=16, n_layer=1, n_head=H, n_embd=C,
                       kernel=kernel, **kw)


def left_padded_valid():
    """(B, T) key_valid: row 0 has two pad tokens on the left, row 1 none."""
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[0, :2] = False
    return valid


def pair(causal=True):
    """A math-path and an SDPA-path SelfAttention with identical random weights."""
    torch.manual_seed(0)
    math_attn = SelfAttention(cfg("math"), causal=causal)
    with torch.no_grad():  # nn.Linear biases start small; make them clearly non-zero
        math_attn.qkv.bias.normal_()
        math_attn.proj.bias.normal_()
    sdpa_attn = SelfAttention(cfg("sdpa"), causal=causal)
    sdpa_attn.load_state_dict(math_attn.state_dict())
    return math_attn.eval(), sdpa_attn.eval()


# --- attend_math against torch's fused kernel ------------------------------------------------

@pytest.mark.parametrize("kind", ["none", "causal", "causal_offset", "padding", "causal+padding"])
def test_attend_math_matches_sdpa(kind):
    torch.manual_seed(0)
    S = 7 if kind == "causal_offset" else T
    q = torch.randn(B, H, T, D)
    k, v = torch.randn(B, H, S, D), torch.randn(B, H, S, D)
    if kind == "none":
        mask = None
    elif kind in ("causal", "causal_offset"):
        mask = causal_mask(T, S)  # (T, S)
    elif kind == "padding":
        mask = combine(T, S, False, padding_mask(left_padded_valid()))
    else:
        mask = combine(T, S, True, padding_mask(left_padded_valid()))
    y, w = attend_math(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert y.shape == (B, H, T, D) and w.shape == (B, H, T, S)
    assert not torch.isnan(y).any()
    torch.testing.assert_close(y, ref, atol=TOL, rtol=0)
    if kind == "causal":  # also the is_causal flag, which SelfAttention uses without a mask
        ref_flag = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        torch.testing.assert_close(y, ref_flag, atol=TOL, rtol=0)


def test_attend_math_weights_by_hand():
    """One head, two keys: the weights are the softmax of q.k / sqrt(D)."""
    q = torch.tensor([[[[1.0, 0.0, 0.0, 0.0]]]])  # (1, 1, 1, 4)
    k = torch.tensor([[[[2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]]])  # (1, 1, 2, 4)
    v = torch.tensor([[[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]]])
    y, w = attend_math(q, k, v)
    w0 = math.exp(2 / 2) / (math.exp(2 / 2) + math.exp(0))  # scores 2/sqrt(4), 0
    torch.testing.assert_close(w, torch.tensor([[[[w0, 1 - w0]]]]), atol=1e-7, rtol=0)
    torch.testing.assert_close(y, torch.tensor([[[[w0, 1 - w0, 0.0, 0.0]]]]), atol=1e-7, rtol=0)


def test_qk_scale_replaces_one_over_sqrt_d():
    """scale=1 (no sqrt(D) scaling): scores 2 and 0 instead of 1 and 0, in both paths."""
    q = torch.tensor([[[[1.0, 0.0, 0.0, 0.0]]]])  # (1, 1, 1, 4)
    k = torch.tensor([[[[2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]]])  # (1, 1, 2, 4)
    v = torch.eye(4)[:2][None, None]  # (1, 1, 2, 4)
    y, w = attend_math(q, k, v, scale=1.0)
    w0 = math.exp(2) / (math.exp(2) + 1)
    torch.testing.assert_close(w, torch.tensor([[[[w0, 1 - w0]]]]), atol=1e-7, rtol=0)
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, scale=1.0), y)
    cfg = dict(n_embd=C, n_head=2, block_size=16, qk_scale=1.0)
    torch.manual_seed(3)
    unscaled = SelfAttention(ModelConfig(**cfg, kernel="math"))
    sdpa = SelfAttention(ModelConfig(**cfg))
    sdpa.load_state_dict(unscaled.state_dict())
    default = SelfAttention(ModelConfig(**cfg | {"qk_scale": None}))
    default.load_state_dict(unscaled.state_dict())
    x = torch.randn(B, T, C)
    torch.testing.assert_close(sdpa(x), unscaled(x), atol=TOL, rtol=0)
    assert (default(x) - unscaled(x)).abs().max() > 1e-3


# --- SelfAttention: SDPA path == math path ---------------------------------------------------

@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("padded", [False, True])
def test_self_attention_sdpa_equals_math(causal, padded):
    math_attn, sdpa_attn = pair(causal)
    torch.manual_seed(2)
    x = torch.randn(B, T, C)
    pad = padding_mask(left_padded_valid()) if padded else None
    y_math, y_sdpa = math_attn(x, pad), sdpa_attn(x, pad)
    assert y_math.shape == (B, T, C)
    assert not torch.isnan(y_math).any()
    torch.testing.assert_close(y_sdpa, y_math, atol=TOL, rtol=0)


def test_self_attention_sdpa_equals_math_with_cache():
    """Prefill 3, then a chunk of 2 (the T != S causal-offset mask) and a single token."""
    math_attn, sdpa_attn = pair(causal=True)
    torch.manual_seed(3)
    x = torch.randn(B, 6, C)
    outs = []
    for attn in (math_attn, sdpa_attn):
        cache = LayerCache(B, H, 16, D, device=None, dtype=torch.float32)
        outs.append(torch.cat([attn(x[:, :3], cache=cache), attn(x[:, 3:5], cache=cache),
                               attn(x[:, 5:6], cache=cache)], dim=1))
        torch.testing.assert_close(outs[-1], attn(x), atol=1e-5, rtol=0)  # cache == full
    torch.testing.assert_close(outs[1], outs[0], atol=TOL, rtol=0)


# --- SelfAttention == torch.nn.MultiheadAttention ---------------------------------------------

def mha_from(attn: SelfAttention) -> nn.MultiheadAttention:
    mha = nn.MultiheadAttention(C, H, bias=True, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(attn.qkv.weight)  # (3C, C) rows [W_Q; W_K; W_V] in both
        mha.in_proj_bias.copy_(attn.qkv.bias)
        mha.out_proj.weight.copy_(attn.proj.weight)
        mha.out_proj.bias.copy_(attn.proj.bias)
    return mha.eval()


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("case", ["causal", "padding", "causal+right_padding"])
def test_self_attention_equals_torch_mha(kernel, case):
    math_attn, sdpa_attn = pair(causal=case != "padding")
    attn = math_attn if kernel == "math" else sdpa_attn
    mha = mha_from(attn)
    torch.manual_seed(4)
    x = torch.randn(B, T, C)
    valid = torch.ones(B, T, dtype=torch.bool)
    if case == "padding":
        valid = left_padded_valid()
    elif case == "causal+right_padding":
        valid[0, -2:] = False
    attn_mask = ~causal_mask(T, T) if case != "padding" else None  # nn.MHA: True = blocked
    key_padding_mask = ~valid if case != "causal" else None  # nn.MHA: True = ignore this key
    pad = padding_mask(valid) if case != "causal" else None
    ours = attn(x, pad)
    with torch.no_grad():
        ref, _ = mha(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                     need_weights=False)
    assert valid.sum() < B * T or case == "causal"
    torch.testing.assert_close(ours[valid], ref[valid], atol=TOL, rtol=0)


# --- attention weights through the `hook_pattern` hook -----------------------------------------

@pytest.mark.parametrize("causal", [True, False])
def test_math_weights_rows_sum_to_one_and_masked_keys_are_zero(causal):
    math_attn, _ = pair(causal)
    captured = []
    handle = math_attn.hook_pattern.register_forward_hook(lambda m, i, out: captured.append(out))
    torch.manual_seed(5)
    valid = left_padded_valid()
    math_attn(torch.randn(B, T, C), padding_mask(valid))
    handle.remove()
    assert len(captured) == 1
    w = captured[0]
    assert w.shape == (B, H, T, T)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, T), atol=1e-6, rtol=0)
    allowed = combine(T, T, causal, padding_mask(valid)).expand(B, H, T, T)
    assert (w[~allowed] == 0).all()  # exactly zero, not merely small
    assert (w[allowed] > 0).all()
    # Row 0, query 3 (a real token after two pads) puts nothing on the pads.
    assert (w[0, :, 3, :2] == 0).all()
    if causal:  # a left-padding query has no real key before it: it sees only itself, not NaN
        torch.testing.assert_close(w[0, :, 0], torch.tensor([1.0, 0, 0, 0, 0]).expand(H, T))
    else:  # without causality it sees itself and the real keys, but not the other pad
        assert (w[0, :, 0, 1] == 0).all() and (w[0, :, 0, [0, 2, 3, 4]] > 0).all()


def test_math_weights_causal_without_padding():
    math_attn, _ = pair(causal=True)
    captured = []
    math_attn.hook_pattern.register_forward_hook(lambda m, i, out: captured.append(out))
    torch.manual_seed(6)
    math_attn(torch.randn(B, T, C))
    w = captured[0]
    upper = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    assert (w[..., upper] == 0).all()
    torch.testing.assert_close(w[..., 0, 0], torch.ones(B, H))  # the first query sees only itself
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, T), atol=1e-6, rtol=0)


# --- heads stay apart ---------------------------------------------------------------------------

def per_head_reference(attn: SelfAttention, x, causal: bool, scramble: bool = False):
    """Attention written one head at a time: head h uses rows h*D..(h+1)*D of W_Q, W_K, W_V
    and writes output channels h*D..(h+1)*D before W_O. With `scramble`, the classic bug:
    `view(B, H, T, D)` without the transpose, which mixes time steps and heads."""
    Bx, Tx, _ = x.shape
    q, k, v = F.linear(x, attn.qkv.weight, attn.qkv.bias).split(C, dim=2)  # 3 x (B, T, C)
    if scramble:
        q, k, v = (t.reshape(Bx, H, Tx, D) for t in (q, k, v))
        heads = []
        for h in range(H):
            s = q[:, h] @ k[:, h].transpose(-2, -1) / math.sqrt(D)
            if causal:
                s = s.masked_fill(~causal_mask(Tx, Tx), float("-inf"))
            heads.append(torch.softmax(s, -1) @ v[:, h])
        y = torch.stack(heads, 1).reshape(Bx, Tx, C)
        return F.linear(y, attn.proj.weight, attn.proj.bias)
    outs = []
    for h in range(H):
        cols = slice(h * D, (h + 1) * D)
        qh, kh, vh = q[..., cols], k[..., cols], v[..., cols]  # (B, T, D)
        s = qh @ kh.transpose(-2, -1) / math.sqrt(D)  # (B, T, T)
        if causal:
            s = s.masked_fill(~causal_mask(Tx, Tx), float("-inf"))
        outs.append(torch.softmax(s, -1) @ vh)  # (B, T, D)
    y = torch.cat(outs, dim=-1)  # (B, T, C): head h in channels h*D..(h+1)*D
    return F.linear(y, attn.proj.weight, attn.proj.bias)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("causal", [True, False])
def test_self_attention_equals_per_head_loop(kernel, causal):
    attn = pair(causal)[0 if kernel == "math" else 1]
    torch.manual_seed(7)
    x = torch.randn(B, T, C)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), per_head_reference(attn, x, causal), atol=TOL, rtol=0)
        # The reference is sharp enough to catch a scrambled reshape.
        wrong = per_head_reference(attn, x, causal, scramble=True)
        assert (attn(x) - wrong).abs().max() > 1e-2


@pytest.mark.parametrize("kernel", KERNELS)
def test_head_h_only_writes_its_own_channel_block(kernel):
    """With W_O = I, output channels h*D..(h+1)*D come from head h alone: silencing head 1's
    values zeroes exactly that block and leaves the others bit-for-bit unchanged."""
    attn = pair(causal=True)[0 if kernel == "math" else 1]
    with torch.no_grad():
        attn.proj.weight.copy_(torch.eye(C))
        attn.proj.bias.zero_()
        torch.manual_seed(8)
        x = torch.randn(B, T, C)
        before = attn(x)
        v_rows = slice(2 * C + D, 2 * C + 2 * D)  # W_V rows of head 1
        attn.qkv.weight[v_rows] = 0
        attn.qkv.bias[v_rows] = 0
        after = attn(x)
    assert (after[..., D:2 * D] == 0).all()
    assert before[..., D:2 * D].abs().max() > 1e-2
    torch.testing.assert_close(after[..., :D], before[..., :D], atol=0, rtol=0)
    torch.testing.assert_close(after[..., 2 * D:], before[..., 2 * D:], atol=0, rtol=0)


# --- masks on hand-written examples ------------------------------------------------------------

def b(rows):
    return torch.tensor(rows, dtype=torch.bool)


def test_causal_mask_square():
    assert torch.equal(causal_mask(3, 3), b([[1, 0, 0],
                                             [1, 1, 0],
                                             [1, 1, 1]]))


def test_causal_mask_with_kv_cache_offset():
    # Two new queries at absolute positions 3 and 4, five keys (three cached).
    assert torch.equal(causal_mask(2, 5), b([[1, 1, 1, 1, 0],
                                             [1, 1, 1, 1, 1]]))
    # One new query sees everything cached.
    assert torch.equal(causal_mask(1, 4), b([[1, 1, 1, 1]]))


def test_combine_without_anything_is_none():
    assert combine(3, 3, False, None) is None
    assert torch.equal(combine(3, 3, True, None), causal_mask(3, 3))


def test_combine_left_padding_causal():
    valid = b([[0, 1, 1], [1, 1, 1]])  # row 0: one pad on the left
    mask = combine(3, 3, True, padding_mask(valid))
    assert mask.shape == (2, 1, 3, 3)
    assert torch.equal(mask[0, 0], b([[1, 0, 0],    # the pad query sees only itself
                                      [0, 1, 0],    # real queries never see the pad
                                      [0, 1, 1]]))
    assert torch.equal(mask[1, 0], causal_mask(3, 3))


def test_combine_padding_not_causal():
    valid = b([[0, 0, 1, 1]])
    mask = combine(4, 4, False, padding_mask(valid))
    assert torch.equal(mask[0, 0], b([[1, 0, 1, 1],
                                      [0, 1, 1, 1],
                                      [0, 0, 1, 1],
                                      [0, 0, 1, 1]]))


def test_combine_kv_cache_offset_with_left_padding():
    # T=2 new queries at positions 3, 4 over S=5 keys; the first two keys are padding.
    valid = b([[0, 0, 1, 1, 1]])
    mask = combine(2, 5, True, padding_mask(valid))
    assert torch.equal(mask[0, 0], b([[0, 0, 1, 1, 0],
                                      [0, 0, 1, 1, 1]]))


def test_left_padded_query_row_is_not_nan():
    valid = b([[0, 0, 1]])
    mask = combine(3, 3, True, padding_mask(valid))
    torch.manual_seed(9)
    q, k, v = (torch.randn(1, 2, 3, 4) for _ in range(3))
    y, w = attend_math(q, k, v, mask)
    assert not torch.isnan(y).any() and not torch.isnan(w).any()
    torch.testing.assert_close(y[0, :, 0], v[0, :, 0])  # a pad query copies its own value
    torch.testing.assert_close(y[0, :, 1], v[0, :, 1])
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(y, ref, atol=TOL, rtol=0)
