"""Grouped-query attention is multi-head attention with each kv head repeated for its query
heads; the KV cache holds Hkv heads."""

import pytest
import torch

from glassformer.config import ModelConfig
from glassformer.model.attention import LayerCache, SelfAttention
from glassformer.model.gpt import GPT
from glassformer.model.kv_cache import KVCache
from tests.helpers import KERNELS


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
            cache = LayerCache(2, attn.kv_heads, 16, 8, None, torch.float32)
            parts = [attn(x[:, :5], cache=cache)]
            parts += [attn(x[:, t:t + 1], cache=cache) for t in range(5, 12)]
            assert cache.k.shape == (2, attn.kv_heads, 16, 8)
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
        layer.append(torch.zeros(2, expected, 3, 8), torch.zeros(2, expected, 3, 8))
        assert layer.k.shape == layer.v.shape == (2, expected, 16, 8)  # grown to the window
    assert GPT(cfg).blocks[0].attn.qkv.weight.shape == (32 + 2 * expected * 8, 32)


def test_the_cache_grows_as_positions_come_and_keeps_them():
    cache = LayerCache(1, 2, 1000, 4, None, torch.float32)
    assert cache.k.size(2) == 0  # nothing allocated before the first position
    keys = torch.randn(1, 2, 600, 4)
    for t in range(600):  # one position at a time, as decoding writes them
        k, v = cache.append(keys[:, :, t:t + 1], -keys[:, :, t:t + 1])
    assert cache.k.size(2) == 1000  # 256, 512, then the window (not 1024)
    assert k.equal(keys) and v.equal(-keys)
    with pytest.raises(ValueError, match="holds 1000 positions; 1001 were asked for"):
        cache.append(torch.zeros(1, 2, 401, 4), torch.zeros(1, 2, 401, 4))
