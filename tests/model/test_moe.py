"""Mixture of experts: the routed forward against a per-token loop, the load-balancing loss
against Hugging Face Mixtral's, the GPT loss and gradients with experts, parameter counts,
causality, KV-cache decoding and a short training run."""

import math
import typing

import pytest
import torch
import torch.nn.functional as F

from glassformer.config import Activation, ModelConfig
from glassformer.inspect.params import closed_form_count
from glassformer.model import count_parameters
from glassformer.model.gpt import GPT
from tests.helpers import lively_gpt
from glassformer.model.mlp import MLP
from glassformer.model.moe import MoE

E, VOCAB, BLOCK = 4, 23, 16
ACTIVATIONS = typing.get_args(Activation)
TOL = dict(atol=1e-6, rtol=0)


def moe_cfg(**kw) -> ModelConfig:
    base = dict(vocab_size=VOCAB, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16, moe_experts=E)
    return ModelConfig(**{**base, **kw})


def make_moe(seed=0, **kw) -> MoE:
    torch.manual_seed(seed)
    return MoE(moe_cfg(**kw))  # torch's default init: biases and router already non-zero


def reference(moe: MoE, x: torch.Tensor):
    """The MoE written token by token: softmax, top-k, renormalise, sum of gate * expert(x)."""
    B, T, C = x.shape
    out = torch.zeros_like(x)
    counts = torch.zeros(len(moe.experts), dtype=torch.int64)
    for b in range(B):
        for t in range(T):
            token = x[b, t]  # (C,)
            probs = F.softmax(moe.router.weight @ token, dim=-1)  # (E,)
            gates, chosen = probs.topk(moe.top_k)  # (k,)
            gates = gates / gates.sum()
            for g, e in zip(gates, chosen.tolist()):
                out[b, t] += g * moe.experts[e](token[None])[0]
                counts[e] += 1
    return out, counts


def router_logits(model):
    """Capture each router's (N, E) logits with forward hooks; returns the list they fill."""
    logits = []
    for module in model.modules():
        if isinstance(module, MoE):
            module.router.register_forward_hook(lambda m, inp, out: logits.append(out.detach()))
    return logits


# --- the routed forward -------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("top_k", [1, 2])
def test_moe_equals_per_token_reference(top_k, activation):
    moe = make_moe(moe_top_k=top_k, activation=activation)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        out = moe(x)
        ref, counts = reference(moe, x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, ref, **TOL)
    assert moe.counts.dtype == torch.int64 and moe.counts.shape == (E,)
    assert moe.counts.sum() == 2 * 5 * top_k
    assert torch.equal(moe.counts, counts)


@pytest.mark.parametrize("top_k", [1, 2, E])
def test_gates_sum_to_one(top_k):
    """With every expert a copy of one MLP, any gates that sum to 1 give back that MLP."""
    moe = make_moe(moe_top_k=top_k)
    with torch.no_grad():
        for expert in moe.experts[1:]:
            expert.load_state_dict(moe.experts[0].state_dict())
        x = torch.randn(2, 5, 16)
        torch.testing.assert_close(moe(x), moe.experts[0](x), **TOL)


def test_top_k_of_all_experts_is_the_dense_softmax_mixture():
    moe = make_moe(moe_top_k=E)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        probs = F.softmax(moe.router(x), dim=-1)  # (B, T, E)
        dense = sum(probs[..., e:e + 1] * expert(x) for e, expert in enumerate(moe.experts))
        torch.testing.assert_close(moe(x), dense, **TOL)
    assert moe.counts.tolist() == [10] * E


# --- the load-balancing loss ----------------------------------------------------------------------

@pytest.mark.parametrize("top_k", [1, 2])
def test_aux_loss_matches_hugging_face_mixtral(top_k):
    """HF divides the assignment counts by N, we by N*k (so balanced routing gives 1 at any k):
    HF's value is k times ours."""
    modeling_mixtral = pytest.importorskip("transformers.models.mixtral.modeling_mixtral")
    moe = make_moe(moe_top_k=top_k)
    logits = router_logits(moe)
    moe(torch.randn(3, 7, 16))
    hf = modeling_mixtral.load_balancing_loss_func(tuple(logits), E, top_k)
    torch.testing.assert_close(moe.aux_loss, hf / top_k, **TOL)


@pytest.mark.parametrize("top_k", [1, 2])
def test_aux_loss_is_one_for_uniform_routing(top_k):
    """Router = identity on C = E = 4 channels, tokens = the cyclic shifts of (3, 2, 1, 0): every
    expert gets k of the 4k assignments and mean probability 1/4, so aux = 4 * 4 * (1/4)(1/4)."""
    moe = MoE(moe_cfg(n_embd=4, n_head=1, moe_top_k=top_k))
    with torch.no_grad():
        moe.router.weight.copy_(torch.eye(E))
        x = torch.stack([torch.tensor([3.0, 2.0, 1.0, 0.0]).roll(i) for i in range(E)])[None]
        moe(x)  # (1, 4, 4)
    assert moe.counts.tolist() == [top_k] * E
    torch.testing.assert_close(moe.aux_loss, torch.tensor(1.0), **TOL)


def test_aux_loss_grows_when_one_expert_takes_everything():
    """Every token to expert 0 with probability ~1: f_0 = P_0 = 1, so aux = E."""
    moe = make_moe(moe_top_k=1)
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[0] = 100.0
        moe(torch.rand(2, 5, 16) + 0.1)  # positive channels: expert 0's logit is far the largest
    assert moe.counts.tolist() == [10, 0, 0, 0]
    torch.testing.assert_close(moe.aux_loss, torch.tensor(float(E)), **TOL)


# --- in a GPT ------------------------------------------------------------------------------------

def build(seed=0, **kw) -> GPT:
    return lively_gpt(moe_cfg(**kw), seed)


def test_dense_blocks_without_experts():
    assert isinstance(build(moe_experts=0).blocks[0].mlp, MLP)
    assert all(isinstance(block.mlp, MoE) for block in build().blocks)


def test_gpt_loss_adds_weighted_aux_losses_and_gradients_reach_router_and_experts():
    modeling_mixtral = pytest.importorskip("transformers.models.mixtral.modeling_mixtral")
    model = build(moe_aux_weight=0.5).train()
    logits_per_layer = router_logits(model)
    torch.manual_seed(1)
    ids, targets = torch.randint(VOCAB, (2, 12)), torch.randint(VOCAB, (2, 12))
    logits, loss = model(ids, targets)
    ce = F.cross_entropy(logits.view(-1, VOCAB), targets.view(-1))
    k = model.cfg.moe_top_k
    aux = sum(modeling_mixtral.load_balancing_loss_func((layer,), E, k) / k
              for layer in logits_per_layer)  # recomputed from the captured router logits
    assert len(logits_per_layer) == model.cfg.n_layer
    torch.testing.assert_close(loss, ce + 0.5 * aux, **TOL)
    loss.backward()
    for block in model.blocks:
        assert block.mlp.router.weight.grad.abs().sum() > 0
        for expert, n in zip(block.mlp.experts, block.mlp.counts.tolist()):
            assert (expert.fc.weight.grad.abs().sum() > 0) == (n > 0)


def test_top_1_router_learns_only_from_the_aux_loss():
    """With k = 1 the renormalised gate is p / p = 1, so cross-entropy alone gives the router no
    gradient (only rounding, ~1e-10); with k = 2 it does (~1e-2)."""
    ids = torch.randint(VOCAB, (2, 12))
    for top_k, lo, hi in [(1, 0.0, 1e-8), (2, 1e-4, math.inf)]:
        model = build(moe_top_k=top_k, moe_aux_weight=0.0)
        model(ids, ids)[1].backward()
        for block in model.blocks:
            assert lo <= block.mlp.router.weight.grad.abs().max() < hi


MOE_CONFIGS = [dict(activation=a, bias=b, moe_experts=e, moe_top_k=k)
               for a, b, e, k in [("gelu", True, 4, 2), ("gelu", False, 2, 1),
                                  ("swiglu", True, 3, 2), ("swiglu", False, 4, 4),
                                  ("relu", True, 8, 2), ("geglu", False, 4, 1)]]


@pytest.mark.parametrize("kw", MOE_CONFIGS, ids=lambda kw: "-".join(map(str, kw.values())))
def test_parameter_count_matches_closed_form(kw):
    cfg = moe_cfg(**kw)
    assert count_parameters(GPT(cfg)) == closed_form_count(cfg)
    dense = closed_form_count(moe_cfg(**{**kw, "moe_experts": 0}))
    C, n = cfg.n_embd, cfg.moe_experts
    ffn = count_parameters(MLP(cfg))
    assert closed_form_count(cfg) - dense == cfg.n_layer * (C * n + (n - 1) * ffn)


@pytest.mark.parametrize("top_k", [1, 2])
def test_causality_and_kv_cache_with_experts(top_k, check_causal, check_cached_decoding):
    model = build(moe_top_k=top_k)
    torch.manual_seed(2)
    ids = torch.randint(VOCAB, (2, BLOCK))
    check_causal(model, ids)  # routing is per token, so it cannot leak the future
    check_cached_decoding(model, ids)


def test_short_training_learns_from_context(check_learns_from_context):
    """The loss includes the load-balancing term in training mode."""
    check_learns_from_context(moe_experts=E)


def test_evaluation_reports_the_cross_entropy_alone():
    """The load-balancing loss is a training objective: in eval mode the loss is the plain
    cross-entropy, so val loss and perplexity compare with dense models."""
    model = build(moe_aux_weight=0.5)
    torch.manual_seed(2)
    ids, targets = torch.randint(VOCAB, (2, 12)), torch.randint(VOCAB, (2, 12))
    logits, loss = model.eval()(ids, targets)
    torch.testing.assert_close(loss, F.cross_entropy(logits.view(-1, VOCAB), targets.view(-1)))
    _, train_loss = model.train()(ids, targets)
    assert train_loss > loss + 0.1  # 0.5 * (aux >= 1 per layer) on top
