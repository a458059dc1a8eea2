"""The analyses on hook points: logit lens, direct logit attribution, activation patching, head
detectors, checked against the model's own logits, exact cases and hand-built heads."""

import copy

import pytest
import torch
import torch.nn.functional as F

from glassformer.config import ModelConfig
from glassformer.errors import GlassformerError
from glassformer.inspect.attribution import direct_logit_attribution
from glassformer.inspect.lens import lens_table, logit_lens
from glassformer.inspect.patching import patch_heads, patch_residual
from glassformer.model import build
from glassformer.model.hooks import run_with_cache, run_with_hooks
from glassformer.train.detectors import (detect, head_scores, induction_loss, kind_masks,
                                         repeated_tokens)
from tests.helpers import lively_gpt

V = 24


def make(family="gpt", **parts):
    cfg = ModelConfig(family=family, vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=16,
                      **parts)
    if family == "gpt":
        return lively_gpt(cfg)
    torch.manual_seed(0)
    return build(cfg).eval()


def ids_of(T=8, seed=1, batch=1):
    return torch.randint(V, (batch, T), generator=torch.Generator().manual_seed(seed))


# --- logit lens --------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["gpt", "bert", "encdec"])
def test_the_lens_after_the_last_layer_is_the_model_output(family):
    model = make(family)
    ids = ids_of()
    inputs = (ids_of(T=5, seed=2), ids) if family == "encdec" else (ids,)
    lens = logit_lens(model, *inputs)
    assert lens.shape == (3, 8, V)  # embeddings + 2 layers
    with torch.no_grad():
        torch.testing.assert_close(lens[-1], model(*inputs)[0][0])


def test_a_layer_that_writes_nothing_leaves_the_lens_unchanged():
    model = make()
    with torch.no_grad():  # layer 1's sublayers write zeros into the residual stream
        for p in (model.blocks[1].attn.proj, model.blocks[1].mlp.proj):
            p.weight.zero_()
            p.bias.zero_()
    lens = logit_lens(model, ids_of())
    assert torch.equal(lens[2], lens[1]) and not torch.allclose(lens[1], lens[0])


def test_the_lens_table_ranks_the_target():
    logits = torch.tensor([[[0.0, 2.0, 1.0]], [[3.0, 1.0, 2.0]]])  # (L + 1, T, V)
    rows = lens_table(logits, target=2, top=2)
    assert [r.target_rank for r in rows] == [1, 1]
    assert rows[0].top[0][0] == 1 and rows[1].top[0][0] == 0
    torch.testing.assert_close(torch.tensor(rows[1].target_prob),
                               torch.softmax(logits[1, 0], -1)[2])


# --- direct logit attribution ------------------------------------------------------------------

@pytest.mark.parametrize("parts", [{}, {"norm": "rmsnorm"}, {"n_kv_head": 1, "bias": False},
                                   {"moe_experts": 3}, {"tie_weights": False}])
def test_the_parts_sum_to_the_logit_and_the_logit_difference(parts):
    model = make(**parts)
    ids = ids_of()
    with torch.no_grad():
        logits = model(ids)[0][0, -1]  # (V,)
    parts_of = direct_logit_attribution(model, ids, target=3)
    assert len([p for p in parts_of if "H" in p]) == 2 * 2  # every head of every layer
    torch.testing.assert_close(torch.tensor(sum(parts_of.values())), logits[3], atol=1e-5,
                               rtol=0)
    diff = direct_logit_attribution(model, ids, target=3, other=5, position=4)
    with torch.no_grad():
        at4 = model(ids)[0][0, 4]
    torch.testing.assert_close(torch.tensor(sum(diff.values())), at4[3] - at4[5], atol=1e-5,
                               rtol=0)


def test_the_attribution_of_a_head_is_what_removing_it_takes_away_directly():
    model = make()
    ids = ids_of()
    parts = direct_logit_attribution(model, ids, target=3)
    D = model.cfg.head_dim
    edited = copy.deepcopy(model)
    with torch.no_grad():
        edited.blocks[1].attn.proj.weight[:, D:] = 0  # layer 1, head 1 writes nothing
        names = ["norm.hook_scale", "blocks.1.hook_mlp_out"]
        full, cache = run_with_cache(model, ids, names=names)
        # Directly: what the MLP after it reads and the final norm's scale stay as they were.
        frozen = [(name, lambda _, name: cache[name]) for name in names]
        without = run_with_hooks(edited, ids, hooks=frozen)[0]
    torch.testing.assert_close(torch.tensor(parts["L1H1"]),
                               full[0][0, -1, 3] - without[0, -1, 3], atol=1e-6, rtol=0)


def test_the_encoder_decoders_decoder_is_attributed_with_its_cross_attention():
    model = make("encdec")
    src, ids = ids_of(T=5, seed=2), ids_of()
    parts = direct_logit_attribution(model, src, ids, target=3)
    assert "L0X1" in parts and "L1 cross bias" in parts
    with torch.no_grad():
        logit = model(src, ids)[0][0, -1, 3]
    torch.testing.assert_close(torch.tensor(sum(parts.values())), logit, atol=1e-5, rtol=0)


def test_post_norm_models_have_no_direct_attribution():
    with pytest.raises(GlassformerError, match="pre-norm"):
        direct_logit_attribution(make(norm_placement="post"), ids_of(), target=1)


# --- activation patching -----------------------------------------------------------------------

def test_patching_the_embeddings_recovers_all_at_the_changed_position_and_nothing_elsewhere():
    model = make()
    clean = ids_of()
    corrupted = clean.clone()
    corrupted[0, 3] = (clean[0, 3] + 1) % V
    shares = patch_residual(model, clean, corrupted, target=3, other=5)  # (L, T)
    assert shares.shape == (2, 8)
    # At layer 0's input each position holds only its own token: the changed one carries it all.
    torch.testing.assert_close(shares[0, 3], torch.tensor(1.0), atol=1e-4, rtol=0)
    others = torch.cat([shares[0, :3], shares[0, 4:]])
    torch.testing.assert_close(others, torch.zeros(7), atol=1e-5, rtol=0)


def test_a_head_that_writes_nothing_recovers_nothing():
    model = make()
    D = model.cfg.head_dim
    with torch.no_grad():
        model.blocks[0].attn.proj.weight[:, :D] = 0  # layer 0, head 0
    clean, corrupted = ids_of(seed=1), ids_of(seed=2)
    shares = patch_heads(model, clean, corrupted, target=3, other=5)  # (L, H)
    assert shares.shape == (2, 2)
    assert shares[0, 0].abs() < 1e-5 and shares[1].abs().max() > 1e-3


def test_patching_needs_prompts_of_one_length():
    with pytest.raises(GlassformerError, match="same length"):
        patch_residual(make(), ids_of(T=8), ids_of(T=7), target=1, other=2)


# --- head detectors ----------------------------------------------------------------------------

def pattern_from(keys: list[int]) -> torch.Tensor:
    """(1, 1, T, T) pattern where query t puts all its weight on key keys[t]."""
    T = len(keys)
    w = torch.zeros(1, 1, T, T)
    w[0, 0, torch.arange(T), torch.tensor(keys)] = 1
    return w


def test_detectors_on_constructed_patterns():
    n = 5
    ids = repeated_tokens(torch.arange(V), n, 1, seed=3)  # (1, 10)
    assert torch.equal(ids[:, :n], ids[:, n:])
    T = 2 * n
    previous = pattern_from([0] + list(range(T - 1)))
    induction = pattern_from(list(range(n)) + [t - n + 1 for t in range(n, T)])
    duplicate = pattern_from(list(range(n)) + [t - n for t in range(n, T)])
    half = induction * 0.5 + duplicate * 0.5
    scores = {name: head_scores(w, ids) for name, w in
              [("prev", previous), ("ind", induction), ("dup", duplicate), ("half", half)]}
    assert scores["prev"]["previous token"].item() == 1.0
    assert scores["ind"]["induction"].item() == 1.0
    assert scores["dup"]["duplicate token"].item() == 1.0
    assert scores["half"]["induction"].item() == 0.5 == scores["half"]["duplicate token"].item()
    masks = kind_masks(ids)  # the random half has no repeats (seed 3): only the second half counts
    assert masks["induction"][0].any(dim=-1).tolist() == [False] * n + [True] * n
    assert scores["prev"]["induction"].item() == 0.0 and scores["ind"]["previous token"] < 0.2


def test_a_head_built_by_hand_to_read_the_previous_token_scores_one():
    T = 16
    cfg = ModelConfig(vocab_size=V, block_size=T, n_layer=1, n_head=1, n_embd=T,
                      norm="rmsnorm", bias=False)
    model = build(cfg).eval()
    with torch.no_grad():
        model.embed.tokens.weight.zero_()
        model.embed.positions.table.weight.copy_(torch.eye(T))  # position p: e_p
        shift = torch.zeros(T, T)
        shift[torch.arange(T - 1), torch.arange(1, T)] = 1  # e_p -> e_{p-1}
        model.blocks[0].attn.qkv.weight.copy_(torch.cat([10 * shift, torch.eye(T), torch.eye(T)]))
    scores = detect(model, ids_of(T=T, batch=2))
    assert scores["previous token"].shape == (1, 1)
    assert scores["previous token"].item() > 0.999
    assert scores["induction"].item() < 0.05


def test_a_two_layer_induction_circuit_built_by_hand_is_detected():
    """Layer 0: a previous-token head writes each token's predecessor into its own subspace.
    Layer 1: its queries (the current token) match the keys' predecessors, so it attends to the
    token after an earlier copy of the current one: an induction head, made of weights alone."""
    n, Vs = 8, 10  # tokens per copy; vocabulary
    T = 2 * n
    C = Vs + T + Vs  # subspaces: the token, its position, the previous token
    tok, pos, prev = slice(0, Vs), slice(Vs, Vs + T), slice(Vs + T, C)
    cfg = ModelConfig(vocab_size=Vs, block_size=T, n_layer=2, n_head=1, n_embd=C,
                      norm="rmsnorm", bias=False)
    model = build(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for norm in (model.norm, *[m for b in model.blocks for m in (b.norm1, b.norm2)]):
            norm.weight.fill_(1)
        model.embed.tokens.weight[:, tok] = torch.eye(Vs)
        model.embed.positions.table.weight[:, pos] = torch.eye(T)
        q0, k0, v0 = torch.zeros(3, C, C)  # (out, in) each
        q0[pos, pos] = 5 * torch.eye(T).roll(-1, dims=0)  # query at p looks for position p - 1
        k0[pos, pos] = 5 * torch.eye(T)
        v0[prev, tok] = torch.eye(Vs)  # ... and copies its token into the previous-token slot
        q1, k1 = torch.zeros(2, C, C)
        q1[prev, tok] = 5 * torch.eye(Vs)  # query: my token; key: your previous token
        k1[prev, prev] = 5 * torch.eye(Vs)
        model.blocks[0].attn.qkv.weight.copy_(torch.cat([q0, k0, v0]))
        model.blocks[1].attn.qkv.weight.copy_(torch.cat([q1, k1, torch.zeros(C, C)]))
        model.blocks[0].attn.proj.weight.copy_(torch.eye(C))
    g = torch.Generator().manual_seed(1)
    half = torch.stack([torch.randperm(Vs, generator=g)[:n] for _ in range(4)])  # (4, n)
    ids = torch.cat([half, half], dim=1)  # (4, 2n): n distinct tokens, repeated
    scores = detect(model, ids)  # {detector: (2, 1)}
    assert scores["previous token"][0].item() > 0.99 and scores["induction"][0].item() < 0.1
    # The first token of the repeat also matches key 0, which (alone) read itself in layer 0:
    # half its weight there, all of every other query's on the token after the earlier copy.
    assert scores["induction"][1].item() == pytest.approx((n - 0.5) / n, abs=1e-3)
    assert scores["previous token"][1].item() < 0.2  # the first copy's queries match nothing:
    # they spread their weight evenly, 1/2 of it on the previous token at t = 1, 1/3 at t = 2 ..


def test_the_induction_loss_is_the_loss_of_each_half():
    model = make()
    ids = repeated_tokens(torch.arange(V), 6, 3)
    first, second = induction_loss(model, ids)
    with torch.no_grad():
        logits = model(ids)[0]  # (3, 12, V)
    by_hand = [F.cross_entropy(logits[:, a:b].reshape(-1, V), ids[:, a + 1:b + 1].reshape(-1))
               for a, b in [(0, 5), (6, 11)]]
    torch.testing.assert_close(torch.tensor([first, second]), torch.stack(by_hand))
