"""Small parts against hand formulas: sinusoidal positions, LayerNorm, the MLP, and parameter
counts against their closed form (GPT-2 small = 124,439,808)."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from glassformer.config import ModelConfig, preset
from glassformer.inspect.params import closed_form_count
from glassformer.model import count_parameters
from glassformer.model.embedding import Embeddings
from glassformer.model.gpt import GPT
from glassformer.model.mlp import ACTIVATIONS, MLP
from glassformer.model.norm import make_norm
from glassformer.model.position import SinusoidalPositions, make_positions, sinusoidal_table


# --- sinusoidal positions ---------------------------------------------------------------------

def test_sinusoidal_table_known_values():
    C = 8
    table = sinusoidal_table(10, C)
    assert table.shape == (10, C) and table.dtype == torch.float32
    assert torch.equal(table[0, 0::2], torch.zeros(C // 2))  # sin(0)
    assert torch.equal(table[0, 1::2], torch.ones(C // 2))  # cos(0)
    assert table[1, 0].item() == pytest.approx(math.sin(1.0), abs=1e-7)
    assert table[1, 1].item() == pytest.approx(math.cos(1.0), abs=1e-7)
    angle = 5 / 10000 ** (2 / C)
    assert table[5, 2].item() == pytest.approx(math.sin(angle), abs=1e-7)
    assert table[5, 3].item() == pytest.approx(math.cos(angle), abs=1e-7)
    angle = 9 / 10000 ** (6 / C)  # the last pair: i = 3
    assert table[9, 6].item() == pytest.approx(math.sin(angle), abs=1e-7)
    assert table[9, 7].item() == pytest.approx(math.cos(angle), abs=1e-7)


def test_sinusoidal_table_whole_against_formula():
    P, C = 12, 10
    table = sinusoidal_table(P, C).double()
    for pos in range(P):
        for i in range(C // 2):
            angle = pos / 10000 ** (2 * i / C)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-7)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-7)


def test_sinusoidal_table_odd_width():
    C = 7
    table = sinusoidal_table(6, C)
    assert table.shape == (6, C)
    assert not torch.isnan(table).any()
    # columns 0, 2, 4, 6 are sines (i = 0..3), 1, 3, 5 cosines (i = 0..2)
    assert table[4, 6].item() == pytest.approx(math.sin(4 / 10000 ** (6 / C)), abs=1e-7)
    assert table[4, 5].item() == pytest.approx(math.cos(4 / 10000 ** (4 / C)), abs=1e-7)
    assert torch.equal(table[0, 0::2], torch.zeros(4))
    assert torch.equal(table[0, 1::2], torch.ones(3))


def test_sinusoidal_positions_have_no_parameters_and_are_not_saved():
    module = SinusoidalPositions(16, 8)
    assert list(module.parameters()) == []
    assert module.state_dict() == {}
    positions = torch.tensor([[0, 1, 5], [2, 2, 3]])
    assert torch.equal(module(positions), sinusoidal_table(16, 8)[positions])
    model = GPT(ModelConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=8,
                            position="sinusoidal"))
    assert not any("positions" in k for k in model.state_dict())


def test_learned_positions_are_a_table():
    cfg = ModelConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=8)
    module = make_positions(cfg)
    assert [p.shape for p in module.parameters()] == [torch.Size([16, 8])]
    positions = torch.tensor([3, 0, 15])
    assert torch.equal(module(positions), module.table.weight[positions])


# --- LayerNorm ------------------------------------------------------------------------------------

def norm_cfg(**kw):
    return ModelConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, **kw)


def test_layer_norm_is_the_biased_variance_formula():
    eps = 1e-5
    norm = make_norm(norm_cfg(norm_eps=eps))
    torch.manual_seed(0)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = 3 * torch.randn(4, 5, 8) + 1
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased: divide by C
    want = norm.weight * (x - mean) / torch.sqrt(var + eps) + norm.bias
    with torch.no_grad():
        got = norm(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # The "annotated" variant, (x - mean) / (std_unbiased + eps), is a different function.
    drift = norm.weight * (x - mean) / (x.std(-1, keepdim=True, unbiased=True) + eps) + norm.bias
    assert (got - drift).abs().max() > 1e-2


def test_layer_norm_eps_and_bias_follow_the_config():
    norm = make_norm(norm_cfg(norm_eps=0.5, bias=False))
    assert norm.bias is None
    assert norm.eps == 0.5
    x = torch.tensor([[1.0, -1.0] * 4])  # mean 0, biased variance 1
    torch.testing.assert_close(norm(x).detach(), x / math.sqrt(1.5))


# --- MLP -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("bias", [True, False])
def test_mlp_equals_linear_chain(activation, bias):
    torch.manual_seed(1)
    mlp = MLP(norm_cfg(activation=activation, bias=bias))
    assert mlp.fc.weight.shape == (32, 8) and mlp.proj.weight.shape == (8, 32)
    x = torch.randn(2, 3, 8)
    act = F.relu if activation == "relu" else F.gelu  # exact (erf) GELU
    want = F.linear(act(F.linear(x, mlp.fc.weight, mlp.fc.bias)), mlp.proj.weight, mlp.proj.bias)
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), want, atol=1e-6, rtol=0)
    if activation == "gelu":  # and not the tanh approximation
        approx = F.linear(F.gelu(F.linear(x, mlp.fc.weight, mlp.fc.bias), approximate="tanh"),
                          mlp.proj.weight, mlp.proj.bias)
        assert not torch.allclose(mlp(x), approx, atol=1e-7, rtol=0)


def test_relu2_is_transformers_relu_squared():
    from transformers.activations import ACT2FN  # ReLUSquaredActivation (Primer)

    x = torch.linspace(-3, 3, 61)
    ours = ACTIVATIONS["relu2"]()
    assert torch.equal(ours(x), ACT2FN["relu2"](x))
    assert torch.equal(ours(x), torch.where(x > 0, x * x, torch.zeros_like(x)))


@pytest.mark.parametrize("bias", [True, False])
def test_relu2_mlp_equals_the_formula(bias):
    """FFN(x) = W2 relu(W1 x + b1)^2 + b2, F = 4C as for the other ungated kinds."""
    torch.manual_seed(1)
    mlp = MLP(norm_cfg(activation="relu2", bias=bias))
    assert mlp.up is None and mlp.fc.weight.shape == (32, 8)
    x = torch.randn(2, 3, 8)
    h = F.linear(x, mlp.fc.weight, mlp.fc.bias)
    want = F.linear(F.relu(h) ** 2, mlp.proj.weight, mlp.proj.bias)
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), want, atol=1e-6, rtol=0)


# --- parameter counts -----------------------------------------------------------------------------

COMBOS = list(itertools.product([True, False], ["learned", "sinusoidal"], ["pre", "post"],
                                [True, False]))


@pytest.mark.parametrize("bias,position,norm_placement,tie_weights", COMBOS)
def test_count_matches_closed_form(bias, position, norm_placement, tie_weights):
    cfg = ModelConfig(vocab_size=37, block_size=20, n_layer=3, n_head=2, n_embd=12, bias=bias,
                      position=position, norm_placement=norm_placement, tie_weights=tie_weights)
    model = GPT(cfg)
    assert count_parameters(model) == closed_form_count(cfg)
    # and the closed form by hand for this small case
    C, V = 12, 37
    # per block: 12 C^2 weights (qkv 3, out 1, ffn 8); biases 4C attention + 5C ffn;
    # two norms of C gains (+ C betas with bias)
    block = 12 * C * C + (9 * C if bias else 0) + (4 * C if bias else 2 * C)
    want = (V * C + (20 * C if position == "learned" else 0) + 3 * block
            + ((2 * C if bias else C) if norm_placement == "pre" else 0)
            + (0 if tie_weights else V * C))
    assert closed_form_count(cfg) == want


def test_gpt2_small_closed_form():
    assert closed_form_count(preset("gpt2").model) == 124_439_808


def test_gpt2_small_real_model_count():
    model = GPT(preset("gpt2").model)  # about 0.5 GB of fp32, a few seconds to initialise
    assert count_parameters(model) == 124_439_808
    assert model.head.weight is model.embed.tokens.weight  # GPT-2 ties them


def test_gpt2_medium_closed_form():
    assert closed_form_count(preset("gpt2-medium").model) == 354_823_168


@pytest.mark.parametrize("position", ["learned", "sinusoidal", "rope", "none"])
def test_embeddings_add_what_the_position_word_names(position):
    cfg = ModelConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16,
                      position=position)
    embed = Embeddings(cfg)
    ids, positions = torch.tensor([[3, 1, 4, 1]]), torch.arange(4)
    tokens = embed.tokens.weight[ids]  # (1, 4, C)
    if position == "learned":
        expected = tokens + embed.positions.table.weight[:4]
    elif position == "sinusoidal":
        # Vaswani et al. 3.4: tokens scaled by sqrt(C) so the unit-size sinusoids don't drown them
        expected = tokens * 4.0 + sinusoidal_table(8, 16)[:4]
    else:
        expected = tokens  # rope acts inside attention; none adds nothing
    torch.testing.assert_close(embed(ids, positions), expected, atol=1e-6, rtol=0)
