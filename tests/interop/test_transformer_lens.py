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

transformer_lens = pytest.importorskip("transformer_lens")
pytestmark = pytest.mark.slow  # importing transformer_lens takes ~30 s on 2 cores

L = 2
# TransformerLens name (blocks.{i}. where per layer) -> ours; "heads" marks (B, T, H, D) there,
# (B, H, T, D) here.
SAME = ["hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post",
        "mlp.hook_pre", "mlp.hook_post", "attn.hook_attn_scores", "attn.hook_pattern"]
NAMES = {"hook_embed": "embed.hook_embed", "hook_pos_embed": "embed.hook_pos_embed",
         "ln_final.hook_scale": "norm.hook_scale", "ln_final.hook_out": "norm.hook_normalized",
         "hook_unembed": None}  # None: the logits
for i in range(L):
    NAMES |= {f"blocks.{i}.{n}": f"blocks.{i}.{n}" for n in SAME}
    NAMES |= {f"blocks.{i}.{ln}.{h}": f"blocks.{i}.{norm}.{ours}"
              for ln, norm in [("ln1", "norm1"), ("ln2", "norm2")]
              for h, ours in [("hook_scale", "hook_scale"), ("hook_out", "hook_normalized")]}
    NAMES |= {f"blocks.{i}.attn.hook_{x}": f"blocks.{i}.attn.hook_{x}" for x in "qkvz"}
HEADS = ("hook_q", "hook_k", "hook_v", "hook_z")


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
    for name, mine in NAMES.items():
        a, b = theirs[name], logits.detach() if mine is None else ours[mine]
        if name.endswith(HEADS):
            b = b.transpose(1, 2)  # (B, H, T, D) -> (B, T, H, D)
        if name.endswith("attn_scores"):  # masked scores: -inf here, the dtype's min there
            a, b = a.masked_fill(b == float("-inf"), 0), b.masked_fill(b == float("-inf"), 0)
        torch.testing.assert_close(b.expand_as(a), a, atol=1e-5, rtol=0, msg=name)
    torch.testing.assert_close(logits.detach(), theirs_logits, atol=1e-5, rtol=0)


def test_the_logit_lens_is_theirs_with_the_norm_recomputed(pair):
    model, bridge = pair
    b = bridge()
    _, cache = b.run_with_cache(IDS[:1])
    stream = cache.accumulated_resid(apply_ln=False)  # (L + 1, 1, T, C)
    theirs = cache.apply_ln_to_stack(stream, recompute_ln=True) @ b.W_U + b.b_U
    torch.testing.assert_close(logit_lens(model, IDS[:1]), theirs[:, 0], atol=1e-5, rtol=0)


def test_direct_logit_attribution_per_head_and_mlp_is_theirs(pair):
    model, bridge = pair
    b = bridge()
    # Their final norm folded into the unembedding, the rest as exported.
    b.enable_compatibility_mode(disable_warnings=True, center_writing_weights=False,
                                center_unembed=False, fold_value_biases=False)
    _, cache = b.run_with_cache(IDS[:1])
    u = b.W_U[:, 3] - b.W_U[:, 5]  # (C,) the logit difference's direction, norm gain folded in
    scale = cache["ln_final.hook_scale"][0, -1]  # (1,) frozen, as both do

    def read(stack):  # (n, 1, C) parts at the last position -> (n,) their shares
        return ((stack - stack.mean(-1, keepdim=True)) / scale @ u).flatten()

    heads, labels = cache.stack_head_results(layer=-1, pos_slice=-1, return_labels=True)
    mlps = torch.stack([cache[f"blocks.{i}.hook_mlp_out"][:, -1] for i in range(L)])
    ours = direct_logit_attribution(model, IDS[:1], target=3, other=5)
    torch.testing.assert_close(torch.tensor([ours[label] for label in labels]), read(heads),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor([ours[f"L{i} mlp"] for i in range(L)]), read(mlps),
                               atol=1e-5, rtol=0)
