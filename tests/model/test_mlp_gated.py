"""Gated feed-forwards (SwiGLU, GeGLU, T5 v1.1's tanh GeGLU) against their formulas, and the default
hidden widths."""
import math

import pytest
import torch
import torch.nn.functional as F

from glassformer.config import ModelConfig
from glassformer.model.mlp import MLP


@pytest.mark.parametrize("activation,act", [
    ("swiglu", F.silu), ("geglu", lambda h: F.gelu(h, approximate="none")),
    ("geglu_tanh", lambda h: F.gelu(h, approximate="tanh"))])


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


def test_geglu_tanh_is_transformers_gelu_new():
    """T5 v1.1's "gated-gelu" gates with transformers' "gelu_new" (the tanh approximation,
    written out), not the exact GELU of our "geglu"."""
    from transformers.activations import ACT2FN

    cfg = ModelConfig(vocab_size=5, block_size=4, n_layer=1, n_head=2, n_embd=16,
                      activation="geglu_tanh")
    h = torch.linspace(-6, 6, 241)
    torch.testing.assert_close(MLP(cfg).act(h), ACT2FN["gelu_new"](h), atol=1e-6, rtol=0)
    assert (MLP(cfg).act(h) - F.gelu(h)).abs().max() > 1e-4 and cfg.gated


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
