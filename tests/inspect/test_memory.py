"""The memory estimate made before training against the peak measured in real training steps."""

import typing

import pytest

from glassformer.config import Activation, ModelConfig, apply_overrides, preset
from glassformer.inspect.memory import measure_peak
from glassformer.train.memory import SAVED_FFN, estimate


@pytest.mark.parametrize("name", ["tiny", "shakespeare-char"])
def test_estimate_is_within_25_percent_of_the_measured_peak(name):
    cfg = preset(name)
    batch, block = cfg.train.batch_size, cfg.model.block_size
    measured = measure_peak(cfg, batch, block)
    predicted = estimate(cfg.model, batch, block)["training_peak"]
    assert abs(predicted - measured) <= 0.25 * measured, (predicted, measured)


@pytest.mark.parametrize("activation", typing.get_args(Activation))
def test_measured_activations_grow_with_the_batch_as_estimated(activation):
    cfg = apply_overrides(preset("shakespeare-char"), {"model.activation": activation})
    block = 64
    grown = measure_peak(cfg, 8, block) - measure_peak(cfg, 4, block)
    per_4 = (estimate(cfg.model, 8, block)["parts"]["activations"]
             - estimate(cfg.model, 4, block)["parts"]["activations"])
    assert abs(grown - per_4) <= 0.25 * per_4, (grown, per_4)


def test_parts_follow_the_formulas():
    cfg = preset("tiny").model
    est = estimate(cfg, batch=4, block=32, dtype="bf16")
    n = est["parameters"]
    assert est["parts"]["weights"] == est["parts"]["gradients"] == 2 * n
    assert est["parts"]["AdamW state"] == 4 * n
    assert est["kv_cache_per_token"] == 2 * cfg.n_layer * cfg.kv_heads * cfg.head_dim * 2


@pytest.mark.parametrize("activation", typing.get_args(Activation))
def test_the_feed_forward_saves_what_saved_ffn_says(activation):
    """Count the distinct (B, T, F) tensors autograd keeps from one feed-forward (views of one
    tensor count once; the weights are not activations)."""
    import torch

    from glassformer.model.mlp import MLP

    F = 64
    mlp = MLP(ModelConfig(n_embd=16, n_head=2, activation=activation, ffn_hidden=F))
    weights = {p.untyped_storage().data_ptr() for p in mlp.parameters()}
    kept = set()

    def pack(t):
        storage = t.untyped_storage().data_ptr()
        if t.shape[-1] == F and storage not in weights:
            kept.add(storage)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        mlp(torch.randn(3, 5, 16, requires_grad=True))
    assert len(kept) == SAVED_FFN[activation]
