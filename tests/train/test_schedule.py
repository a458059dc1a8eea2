"""The learning-rate schedule and the optimizer's weight-decay groups."""

import copy
import math

import pytest
import torch

from glassformer.config import ModelConfig, TrainConfig
from glassformer.model.gpt import GPT
from glassformer.train.optim import lr_at, make_optimizer

CFG = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=110)


def test_warmup_is_linear_to_the_peak():
    assert lr_at(0, CFG) == pytest.approx(1e-4)
    assert lr_at(4, CFG) == pytest.approx(5e-4)
    assert lr_at(9, CFG) == pytest.approx(1e-3)


def test_cosine_decays_from_peak_to_min():
    assert lr_at(10, CFG) == pytest.approx(1e-3)
    assert lr_at(60, CFG) == pytest.approx(1e-4 + 0.5 * 9e-4)  # halfway: cos(pi/2) = 0
    assert lr_at(110, CFG) == pytest.approx(1e-4)
    assert lr_at(500, CFG) == pytest.approx(1e-4)
    decay = [lr_at(s, CFG) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))
    expected = 1e-4 + 0.5 * (1 + math.cos(math.pi * 0.25)) * 9e-4
    assert lr_at(35, CFG) == pytest.approx(expected)


def test_weight_decay_applies_to_matrices_only():
    model = GPT(ModelConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    decay, no_decay = make_optimizer(model, CFG).param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"])
    assert all(p.dim() == 1 for p in no_decay["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in no_decay["params"]} == {
        n for n, p in model.named_parameters() if n.endswith("bias") or "norm" in n}
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_the_fused_update_is_adamws():
    """The fused kernel makes the same update as AdamW's reference loop, over several steps."""
    torch.manual_seed(0)
    fused_model = GPT(ModelConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    plain_model = copy.deepcopy(fused_model)
    start = [p.detach().clone() for p in fused_model.parameters()]
    fused = make_optimizer(fused_model, CFG)
    assert fused.defaults["fused"]
    plain = torch.optim.AdamW([{"params": g["params"], "weight_decay": g["weight_decay"]}
                               for g in make_optimizer(plain_model, CFG).param_groups],
                              lr=CFG.lr, betas=(CFG.beta1, CFG.beta2), foreach=False)
    ids = torch.randint(11, (4, 8))
    for _ in range(5):
        for model, optimizer in ((fused_model, fused), (plain_model, plain)):
            model(ids, ids)[1].backward()
            optimizer.step()
            optimizer.zero_grad()
    for a, b in zip(fused_model.parameters(), plain_model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert all(not torch.equal(a, p) for a, p in zip(fused_model.parameters(), start))  # moved
