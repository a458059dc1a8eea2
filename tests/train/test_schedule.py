"""The learning-rate schedule and the optimizer's weight-decay groups."""

import math

import pytest

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
