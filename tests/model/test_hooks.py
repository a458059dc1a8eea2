"""Hook points: every family and a grid of parts expose the names their config predicts, each hit
once per forward; identity hooks change nothing (bitwise); replacing hooks change the output as
computed by hand; hooks act during cached generation."""

import copy

import pytest
import torch

from glassformer.config import POSITION_ACTS_ON, ModelConfig, SampleConfig
from glassformer.errors import GlassformerError
from glassformer.generate.sampler import generate
from glassformer.model import build
from glassformer.model.hooks import hook_points, hooked, run_with_cache, run_with_hooks
from glassformer.model.kv_cache import KVCache
from glassformer.tokenizers.char import CharTokenizer
from tests.helpers import SONNET

V = 24
PARTS = [{}, {"position": "sinusoidal"}, {"position": "rope"}, {"position": "alibi"},
         {"position": "t5"}, {"position": "none"}, {"norm": "rmsnorm"},
         {"norm_placement": "post"}, {"activation": "swiglu"}, {"activation": "relu2"},
         {"n_kv_head": 1}, {"moe_experts": 3}, {"qk_norm": True}, {"window": 3},
         {"embed_norm": True}, {"attention": "linear"}, {"attention": "linear", "position": "rope"}]
FAMILIES = ["gpt", "bert", "encdec"]
GRID = [pytest.param(family, parts, id=f"{family}-" + "-".join(map(str, parts.values())))
        for family in FAMILIES for parts in PARTS
        if family == "gpt" or parts.get("attention", "softmax") == "softmax"]


def make(family, seed=0, **parts):
    torch.manual_seed(seed)
    cfg = ModelConfig(family=family, vocab_size=V, block_size=16, n_layer=2, n_head=2,
                      n_embd=16, **parts)
    return build(cfg).eval()


def inputs(model, T=7, B=2):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(V, (B, T), generator=g)
    if model.cfg.family == "encdec":
        return torch.randint(V, (B, T + 2), generator=g), ids  # src (B, S), ids (B, T)
    return (ids,)


def expected_names(cfg) -> set[str]:
    """The hook points a model of `cfg` should have, written from the config alone."""
    def norm(at):
        return {f"{at}.hook_scale", f"{at}.hook_normalized"}

    def attention(at, softmax):
        names = {f"{at}.hook_{n}" for n in "qkvz"}
        if softmax:
            names |= {f"{at}.hook_attn_scores", f"{at}.hook_pattern"}
        if cfg.qk_norm:
            names |= norm(f"{at}.q_norm") | norm(f"{at}.k_norm")
        return names

    def mlp(at):
        return {f"{at}.hook_pre", f"{at}.hook_post"} | ({f"{at}.hook_pre_linear"}
                                                         if cfg.gated else set())

    def stack(at, cross=False):
        names = {f"{at}embed.hook_embed"}
        if POSITION_ACTS_ON[cfg.position] == "embeddings":
            names.add(f"{at}embed.hook_pos_embed")
        if cfg.embed_norm:
            names |= norm(f"{at}embed.norm")
        for i in range(cfg.n_layer):
            b = f"{at}blocks.{i}"
            names |= {f"{b}.hook_{n}" for n in ("resid_pre", "attn_out", "resid_mid",
                                                 "mlp_out", "resid_post")}
            names |= norm(f"{b}.norm1") | norm(f"{b}.norm2")
            names |= attention(f"{b}.attn", cfg.attention == "softmax")
            if cross:
                names |= {f"{b}.hook_cross_out", f"{b}.hook_resid_cross"}
                names |= norm(f"{b}.norm_cross") | attention(f"{b}.cross", True)
            if cfg.moe_experts:
                names |= {f"{b}.mlp.hook_probs", f"{b}.mlp.hook_chosen"}
                for e in range(cfg.moe_experts):
                    names |= mlp(f"{b}.mlp.experts.{e}")
            else:
                names |= mlp(f"{b}.mlp")
        return names | (norm(f"{at}norm") if cfg.norm_placement == "pre" else set())

    if cfg.family == "gpt":
        return stack("")
    if cfg.family == "bert":
        return stack("") | norm("mlm.norm")
    return stack("encoder.") | stack("decoder.", cross=True)


@pytest.mark.parametrize("family, parts", GRID)
def test_the_hook_points_are_the_ones_the_config_names_and_each_is_hit_once(family, parts):
    model = make(family, **parts)
    assert set(hook_points(model)) == expected_names(model.cfg)
    hits = {}
    hooks = [(name, lambda v, n: hits.__setitem__(n, hits.get(n, 0) + 1))
             for name in hook_points(model)]
    run_with_hooks(model, *inputs(model), hooks=hooks)
    assert hits == dict.fromkeys(hook_points(model), 1)


@pytest.mark.parametrize("family, parts", GRID)
def test_an_identity_hook_on_every_point_changes_nothing(family, parts):
    model = make(family, **parts)
    # The fused kernel never forms the scores: hooking them moves a layer to the math kernel,
    # so with the fused kernel they stay unhooked; with the math kernel every point is hooked.
    for kernel in ("sdpa", "math"):
        for m in model.modules():
            if hasattr(m, "kernel"):
                m.kernel = kernel
        names = [n for n in hook_points(model)
                 if kernel == "math" or not n.endswith(("attn_scores", "pattern"))]
        with torch.no_grad():
            plain = model(*inputs(model))[0]
            same = run_with_hooks(model, *inputs(model), hooks=[(n, lambda v, _: v)
                                                                for n in names])[0]
        assert torch.equal(same, plain)
        assert all(not p.active for p in hook_points(model).values())  # removed again


@pytest.mark.parametrize("parts", [{}, {"n_kv_head": 1}, {"position": "rope", "qk_norm": True}])
def test_zero_ablating_a_head_equals_zeroing_its_columns_of_w_o(parts):
    model = make("gpt", **parts)
    D, h = model.cfg.head_dim, 1

    def ablate(z, name):  # z (B, H, T, D)
        z = z.clone()
        z[:, h] = 0
        return z

    (ids,) = inputs(model)
    with torch.no_grad():
        hooked_logits = run_with_hooks(model, ids, hooks=[("blocks.1.attn.hook_z", ablate)])[0]
        edited = copy.deepcopy(model)
        edited.blocks[1].attn.proj.weight[:, h * D:(h + 1) * D] = 0  # W_O (C, C): head h's columns
        torch.testing.assert_close(hooked_logits, edited(ids)[0], atol=1e-6, rtol=0)
        assert not torch.allclose(hooked_logits, model(ids)[0], atol=1e-4)


@pytest.mark.parametrize("parts", [{}, {"norm": "rmsnorm"}, {"norm_placement": "post"}])
def test_replacing_the_last_residual_stream_equals_the_head_on_the_new_value(parts):
    model = make("gpt", **parts)
    (ids,) = inputs(model)
    new = torch.randn(2, ids.size(1), model.cfg.n_embd)
    with torch.no_grad():
        logits = run_with_hooks(model, ids, hooks=[("blocks.1.hook_resid_post",
                                                    lambda v, _: new)])[0]
        assert torch.equal(logits, model.head(model.norm(new)))


def test_replacing_a_norm_scale_divides_by_the_new_one():
    model = make("gpt")
    (ids,) = inputs(model)
    _, cache = run_with_cache(model, ids, names=["blocks.1.hook_resid_post", "norm.hook_scale"])
    x, scale = cache["blocks.1.hook_resid_post"], cache["norm.hook_scale"]
    centred = x - x.mean(-1, keepdim=True)
    torch.testing.assert_close(scale, centred.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt())
    with torch.no_grad():
        logits = run_with_hooks(model, ids, hooks=[("norm.hook_scale", lambda s, _: 2 * s)])[0]
        by_hand = model.head(centred / (2 * scale) * model.norm.weight + model.norm.bias)
    torch.testing.assert_close(logits, by_hand, atol=1e-5, rtol=0)


def test_the_cache_holds_the_values_that_flowed():
    model = make("gpt", n_kv_head=1)
    (ids,) = inputs(model)
    logits, cache = run_with_cache(model, ids)
    B, T, C, H, D = 2, ids.size(1), 16, 2, 8
    assert cache["blocks.0.attn.hook_q"].shape == (B, H, T, D)
    assert cache["blocks.0.attn.hook_k"].shape == (B, 1, T, D)  # Hkv = 1
    assert cache["blocks.0.attn.hook_pattern"].shape == (B, H, T, T)
    attn = model.blocks[0].attn  # the block's attention output is W_O applied to the heads' z
    z = cache["blocks.0.attn.hook_z"].transpose(1, 2).reshape(B, T, C)
    torch.testing.assert_close(cache["blocks.0.hook_attn_out"], attn.proj(z).detach())
    torch.testing.assert_close(cache["blocks.0.hook_resid_mid"],
                               cache["blocks.0.hook_resid_pre"] + cache["blocks.0.hook_attn_out"])
    torch.testing.assert_close(logits[0], model.head(cache["norm.hook_normalized"]).detach())


def test_an_unknown_name_is_an_error_that_lists_some():
    model = make("gpt")
    with pytest.raises(GlassformerError, match="no hook point named blocks.9.hook_resid_pre.*"
                       "blocks.0"):
        run_with_cache(model, *inputs(model), names=["blocks.9.hook_resid_pre"])


@pytest.mark.parametrize("parts", [{}, {"attention": "linear"}])
def test_a_hook_acts_the_same_with_the_kv_cache(parts):
    model = make("gpt", **parts)
    (ids,) = inputs(model, T=9, B=1)
    push = torch.randn(16)
    steer = [("blocks.0.hook_resid_post", lambda v, _: v + push)]
    with torch.no_grad(), hooked(model, steer):
        full = model(ids)[0]  # (1, T, V)
        cache = KVCache(model.cfg, 1)
        steps = [model(ids[:, :5], cache=cache)[0]] + [model(ids[:, t:t + 1], cache=cache)[0]
                                                        for t in range(5, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
    assert not torch.allclose(model(ids)[0], full, atol=1e-3)  # the hook did act, and is gone


def test_a_steering_hook_steers_generation():
    tok = CharTokenizer.from_text(SONNET)
    torch.manual_seed(0)
    model = build(ModelConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2,
                              n_embd=16)).eval()
    target = tok.encode("k")[0]
    direction = model.head.weight[target].detach()  # (C,) the unembedding of "k"

    def steer(x, _):  # the final norm's output, pushed towards "k"
        return x + 100 * direction / direction.norm()

    cfg = SampleConfig(max_new_tokens=12, top_k=1, seed=0)
    plain = generate(model, tok, ["From fairest"], cfg)[0]
    with hooked(model, [("norm.hook_normalized", steer)]):
        steered = generate(model, tok, ["From fairest"], cfg)[0]
    assert steered == "k" * 12 and plain != steered
