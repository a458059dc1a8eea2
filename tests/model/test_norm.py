"""RMSNorm against its formula, torch.nn.RMSNorm and Hugging Face Llama's; norms over a head's D."""

import pytest
import torch

from glassformer.config import ModelConfig
from glassformer.model.norm import make_norm

transformers = pytest.importorskip("transformers")
from transformers.models.llama.modeling_llama import LlamaRMSNorm  # noqa: E402


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
