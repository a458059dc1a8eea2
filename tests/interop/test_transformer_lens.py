"""Parity with TransformerLens (PyPI transformer-lens 4.x): a GPT-2-shaped glassformer model,
exported with save_pretrained and wrapped by TransformerBridge, caches the same activations
(the name map of docs/hooks.md), and its logit lens and direct logit attribution agree."""

import pytest
import torch

from glassformer.config import ModelConfig
from glassformer.inspect.attribution import direct_logit_attribution
from glassformer.inspect.lens import logit_lens
from glassformer.interop.hf import save_pretrained
from glassformer.model.hooks import run_with_cache
from tests.helpers import lively_gpt
from tests.interop.lens_pairs import (assert_same_activations, name_map, their_attribution,
                                     their_logit_lens)

transformer_lens = pytest.importorskip("transformer_lens")
pytestmark = pytest.mark.slow  # importing transformer_lens takes ~30 s on 2 cores

L = 2
NAMES = name_map(L, {"hook_pos_embed": "embed.hook_pos_embed"},
                 {"attn.hook_q": "attn.hook_q", "attn.hook_k": "attn.hook_k"})


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPT2LMHeadModel

    cfg = ModelConfig(vocab_size=50, block_size=32, n_layer=L, n_head=4, n_embd=32,
                      activation="gelu_tanh")
    model = lively_gpt(cfg)
    path = tmp_path_factory.mktemp("gpt2")
    save_pretrained(model, path)

    def bridge():
        hf = GPT2LMHeadModel.from_pretrained(path).eval()
        return TransformerBridge.boot_transformers(str(path), hf_model=hf)
    return model, bridge


IDS = torch.randint(50, (2, 9), generator=torch.Generator().manual_seed(0))


def test_every_activation_with_a_counterpart_is_equal(pair):
    model, bridge = pair
    theirs_logits, theirs = bridge().run_with_cache(IDS)
    (logits, _), ours = run_with_cache(model, IDS)
    assert_same_activations(NAMES, logits, ours, theirs)
    torch.testing.assert_close(logits.detach(), theirs_logits, atol=1e-5, rtol=0)


def test_the_logit_lens_is_theirs_with_the_norm_recomputed(pair):
    model, bridge = pair
    torch.testing.assert_close(logit_lens(model, IDS[:1]), their_logit_lens(bridge(), IDS[:1]),
                               atol=1e-5, rtol=0)


def test_direct_logit_attribution_per_head_and_mlp_is_theirs(pair):
    model, bridge = pair
    labels, heads, mlps = their_attribution(bridge(), IDS[:1], 3, 5, L, centre=True)
    ours = direct_logit_attribution(model, IDS[:1], target=3, other=5)
    torch.testing.assert_close(torch.tensor([ours[label] for label in labels]), heads,
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor([ours[f"L{i} mlp"] for i in range(L)]), mlps,
                               atol=1e-5, rtol=0)
